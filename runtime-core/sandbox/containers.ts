/**
 * Container root filesystems of a running sandbox (what the containerd shim asks for): the rootfs
 * mounts assembled on the bundle's rootfs directory (a journalled `rootfs` resource) and that
 * directory shared into the guest over virtio-fs as Kata lays it out
 * (/run/kata-containers/shared/containers/<cid>/rootfs). Removal is the inverse; a crash between the
 * steps is cleaned from the journal.
 */
import { KataError } from '../../host/errors.js';
import { validateId } from '../../host/names.js';
import { UndoStack } from '../../host/undo.js';
import type { ContainerdMount } from '../../plugins/rootfs/mount-plugin.js';
import type { Sandbox } from './sandbox.js';

const idOf = (cid: string): string => `rootfs:${cid}`;

/** Mount and share a container's rootfs; returns where the guest sees it. */
export function addContainerRootfs(sb: Sandbox, cid: string, target: string, mounts: ContainerdMount[]): Promise<{ guestPath: string }> {
  return sb.serialize(async () => {
    sb.requireRunning('add a container');
    validateId(cid, 'container id');
    if (sb.journal.has(idOf(cid)))
      throw new KataError('E_INVALID_ARGUMENT', `sandbox ${sb.id} already has a container ${cid}`, { containerId: cid });
    const undo = new UndoStack(sb.log);
    return undo.guard(async () => {
      const config = { containerId: cid, target, mounts };
      await sb.journal.intend(idOf(cid), 'rootfs', config);
      undo.push(`forget rootfs ${cid}`, () => sb.journal.forget(idOf(cid)));
      const att = await sb.plugins.rootfs.attach(sb.ctx, config);
      undo.push(`unmount rootfs ${cid}`, () => sb.plugins.rootfs.detach(sb.ctx, att));
      await sb.journal.done(idOf(cid), 'rootfs', att);
      const rec = await sb.plugins.virtiofs.shareRootfs(sb.id, cid, target, () => sb.persistShares());
      return { guestPath: rec.guestPath };
    });
  });
}

/** Unshare and unmount a container's rootfs. Harmless when it is already gone. */
export function removeContainerRootfs(sb: Sandbox, cid: string): Promise<void> {
  return sb.serialize(async () => {
    await sb.plugins.virtiofs.unshareContainer(sb.id, cid);
    await sb.persistShares();
    const rec = sb.journal.records('rootfs').find((r) => r.data.resources.containerId === cid);
    if (rec) {
      await sb.plugins.rootfs.detach(sb.ctx, rec.data);
      await sb.journal.forget(rec.id);
    }
  });
}

/** Share a host file or directory for one container (a bind mount of its spec); unshared with the container. */
export function shareContainerPath(
  sb: Sandbox,
  cid: string,
  source: string,
  name: string,
  readonly: boolean,
): Promise<{ guestPath: string }> {
  return sb.serialize(async () => {
    const rec = await sb.plugins.virtiofs.shareVolume(sb.id, { containerId: cid, source, name, readonly }, () => sb.persistShares());
    return { guestPath: rec.guestPath };
  });
}
