import { EventEmitter } from 'node:events';
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { Storage } from '../host/agent-types.js';
import type { DaemonRecord } from '../host/daemon.js';
import type { FsVhostUserSpec } from '../host/device-specs.js';
import { KataError } from '../host/errors.js';
import { validateId } from '../host/names.js';
import { checkpoint, type Attached, type PluginContext, type ResourcePlugin } from '../host/plugin.js';
import { UndoStack } from '../host/undo.js';
import { GUEST_SHARE_DIR, resolveVirtiofsConfig, type ResolvedVirtiofsConfig, type VirtiofsConfig } from './config.js';
import { translateExtraArgs } from './extra-args.js';
import { detectFlavor } from './flavor.js';
import { SharedDir, type SharePolicy, type ShareRecord, type SharedDirState, type VolumeShareRequest } from './shared-dir.js';
import { daemonPidFiles, virtiofsdArgs } from './virtiofsd-args.js';
import { checkSocketPath, VirtiofsDaemon, type CrashInfo, type VirtiofsdState } from './virtiofsd.js';

/**
 * The virtio-fs share of a sandbox as a resource plugin: attach = shared directory + one
 * virtiofsd exporting it; detach = stop the daemon (after the VMM has stopped), unmount
 * everything, remove the directories. The runtime core subscribes to 'crash' (Kata stops the VM
 * when its virtiofsd dies: a guest mount without its daemon hangs), calls vmmStopping() before it
 * stops the VMM on purpose (the C daemon exits when its client leaves), and persists state()
 * after every share change, so recover() can clean up after a crash of the runtime itself.
 */

export interface VirtiofsResources {
  sandboxId: string;
  tag: string;
  queueSize: number;
  shared: SharedDirState;
  daemon: VirtiofsdState;
}

export interface VirtiofsCrashEvent extends CrashInfo {
  sandboxId: string;
}

const VIRTIOFS_DEVICE_ID = 'virtiofs0';
const SOCKET_NAME = 'virtiofsd.sock';

/** The one Storage the agent mounts at sandbox start (Kata's kataShared). */
function guestStorage(tag: string): Storage {
  return { driver: 'virtio-fs', driver_options: [], source: tag, fstype: 'virtiofs', options: [], mount_point: GUEST_SHARE_DIR };
}

function fsDeviceSpec(socket: string, tag: string, queueSize: number): FsVhostUserSpec {
  return { kind: 'fs-vhost-user', id: VIRTIOFS_DEVICE_ID, socket, tag, queueSize };
}

interface Live {
  dir: SharedDir;
  daemon: VirtiofsDaemon;
  cfg: ResolvedVirtiofsConfig;
}

export class VirtiofsPlugin
  extends EventEmitter<{ crash: [VirtiofsCrashEvent]; restart: [{ sandboxId: string; daemon: DaemonRecord }] }>
  implements ResourcePlugin<'virtiofs', VirtiofsConfig, VirtiofsResources>
{
  readonly kind = 'virtiofs' as const;
  private readonly live = new Map<string, Live>();

  async attach(ctx: PluginContext, config: VirtiofsConfig): Promise<Attached<VirtiofsResources>> {
    const cfg = resolveVirtiofsConfig(config);
    const sid = validateId(ctx.sandboxId);
    if (this.live.has(sid))
      throw new KataError('E_SANDBOX_EXISTS', `virtio-fs share of sandbox ${sid} is already attached`, { sandboxId: sid });
    const log = ctx.log.child({ plugin: 'virtiofs' });
    const socketPath = cfg.socketPath ?? join(ctx.runDir, SOCKET_NAME);
    checkSocketPath(socketPath);
    // Config errors (binary, cache or sandbox mode it lacks) before anything is created.
    const flavor = await detectFlavor(cfg.daemonPath);
    virtiofsdArgs(flavor, { ...cfg, socketPath, sourceDir: '/' });
    for (const note of translateExtraArgs(flavor, cfg.extraArgs).notes)
      log.warn({ daemon: cfg.daemonPath }, `virtio_fs_extra_args: ${note}`);

    return new UndoStack(log).guard(async (undo) => {
      await checkpoint(ctx, 'virtiofs.shared-dir');
      const dir = await SharedDir.prepare(cfg.root, sid, log);
      undo.push('tear down shared dir', () => dir.teardown());
      await checkpoint(ctx, 'virtiofs.daemon');
      const daemon = await VirtiofsDaemon.start({ ...cfg, sourceDir: dir.sharedDir, socketPath, log });
      undo.push('stop virtiofsd', () => daemon.stop());
      await checkpoint(ctx, 'virtiofs.ready');
      daemon.on('crash', (c) => this.emit('crash', { sandboxId: sid, ...c }));
      daemon.on('restart', (r) => this.emit('restart', { sandboxId: sid, daemon: r }));
      this.live.set(sid, { dir, daemon, cfg });
      return {
        kind: this.kind,
        resources: this.state(sid),
        devices: [fsDeviceSpec(socketPath, cfg.tag, cfg.queueSize)],
        guest: { storages: [guestStorage(cfg.tag)] },
      };
    });
  }

  /** Stop the daemon, unmount, remove. Works from the live object or, after a restart of ours, from the persisted resources. */
  async detach(ctx: PluginContext, attached: Attached<VirtiofsResources>): Promise<void> {
    const sid = attached.resources.sandboxId;
    const live = this.live.get(sid);
    if (!live) {
      await this.recover(ctx, attached);
      return;
    }
    await live.daemon.stop();
    await live.dir.teardown();
    live.daemon.removeAllListeners();
    this.live.delete(sid);
  }

  /**
   * Tell the manager the VMM is being stopped (call before stopping it): the daemon's exit when
   * its client leaves is then expected, not a 'crash'. Unknown sandboxes are ignored.
   */
  vmmStopping(sandboxId: string): void {
    this.live.get(sandboxId)?.daemon.expectExit();
  }

  /** JSON for the sandbox state file (persist it again after every share/unshare). */
  state(sandboxId: string): VirtiofsResources {
    const l = this.mustLive(sandboxId);
    return { sandboxId, tag: l.cfg.tag, queueSize: l.cfg.queueSize, shared: l.dir.state(), daemon: l.daemon.state() };
  }

  /** The live daemon and directory of an attached sandbox. */
  sandbox(sandboxId: string): { dir: SharedDir; daemon: VirtiofsDaemon } | undefined {
    const l = this.live.get(sandboxId);
    return l ? { dir: l.dir, daemon: l.daemon } : undefined;
  }

  /**
   * Share a container's rootfs read-write. `persist` (e.g. saving the sandbox state with the new
   * share in it) runs once the bind is made; when it fails the share is undone and its error thrown.
   */
  shareRootfs(sandboxId: string, containerId: string, rootfs: string, persist?: (rec: ShareRecord) => Promise<void>): Promise<ShareRecord> {
    const l = this.mustLive(sandboxId);
    return this.committed(l, l.dir.shareRootfs(containerId, rootfs, {}, this.policy(l)), persist);
  }

  /** Share a volume; `persist` as for shareRootfs (a share whose record could not be saved is undone). */
  shareVolume(sandboxId: string, req: VolumeShareRequest, persist?: (rec: ShareRecord) => Promise<void>): Promise<ShareRecord> {
    const l = this.mustLive(sandboxId);
    return this.committed(l, l.dir.shareVolume(req, this.policy(l)), persist);
  }

  private policy(l: Live): SharePolicy {
    return { volumeRoots: l.cfg.volumeRoots, rwShareReachable: l.cfg.rwShareReachable };
  }

  private async committed(l: Live, made: Promise<ShareRecord>, persist?: (rec: ShareRecord) => Promise<void>): Promise<ShareRecord> {
    const rec = await made;
    if (!persist) return rec;
    try {
      await persist(rec);
    } catch (e) {
      await l.dir
        .unshare(rec)
        .catch((u: unknown) => l.dir.log.error({ err: u, share: rec.name }, 'could not undo a share whose record was not saved'));
      throw e;
    }
    return rec;
  }

  unshare(sandboxId: string, share: string | ShareRecord): Promise<void> {
    return this.mustLive(sandboxId).dir.unshare(share);
  }

  unshareContainer(sandboxId: string, containerId: string): Promise<void> {
    return this.mustLive(sandboxId).dir.unshareContainer(containerId);
  }

  /**
   * Clean up a sandbox known only from persisted state (the runtime crashed): stop its daemon if
   * the recorded pid is still that daemon, remove socket and pid files, unmount, remove the dirs.
   */
  async recover(ctx: PluginContext, attached: Attached<VirtiofsResources>): Promise<void> {
    const state = attached.resources;
    const log = ctx.log;
    const live = this.live.get(state.sandboxId);
    if (live) {
      await live.daemon.stop();
      live.daemon.removeAllListeners();
      this.live.delete(state.sandboxId);
    }
    await VirtiofsDaemon.recover(state.daemon, { log });
    await SharedDir.teardownAt(state.shared.sandboxDir, log);
  }

  /**
   * An attach interrupted before its result was journalled (the runtime died part-way): the daemon
   * died with it (it runs with pdeathsig), so what can be left is the shared tree and the daemon's
   * socket and pid files, found under the names attach uses.
   */
  async sweep(ctx: PluginContext, config: VirtiofsConfig): Promise<void> {
    const cfg = resolveVirtiofsConfig(config);
    const sid = validateId(ctx.sandboxId);
    const socketPath = cfg.socketPath ?? join(ctx.runDir, SOCKET_NAME);
    const flavor = await detectFlavor(cfg.daemonPath).catch(() => undefined);
    await VirtiofsDaemon.recover(
      {
        daemonPath: cfg.daemonPath,
        flavor: flavor?.kind ?? 'c',
        version: '',
        socketPath,
        sourceDir: '',
        args: [],
        daemon: undefined,
        pidFiles: flavor ? daemonPidFiles(flavor, socketPath) : [],
      },
      { log: ctx.log },
    );
    const root = existsSync(cfg.root) ? realpathSync(cfg.root) : cfg.root;
    if (existsSync(join(root, 'sandboxes', sid))) await SharedDir.teardownAt(join(root, 'sandboxes', sid), ctx.log);
  }

  private mustLive(sandboxId: string): Live {
    const l = this.live.get(sandboxId);
    if (!l) throw new KataError('E_SANDBOX_NOT_FOUND', `no virtio-fs share is attached for sandbox ${sandboxId}`, { sandboxId });
    return l;
  }
}
