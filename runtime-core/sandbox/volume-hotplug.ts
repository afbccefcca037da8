/**
 * Block volumes on a running sandbox (`kata-resources volume add|del|list`): a host block device or
 * image file hot-plugged as virtio-blk or virtio-scsi through the generic hotplug sequence, then
 * mounted by the agent (which waits for the device at its PCI path or SCSI address). Removal is the
 * inverse: the agent unmounts, the device is unplugged (bounded wait for the guest to release it;
 * E_TIMEOUT keeps the record, so `volume del` can be retried), the host source is left untouched.
 */
import { KataError } from '../../host/errors.js';
import { validateId } from '../../host/names.js';
import type { VolumeConfig, VolumeResources } from '../../plugins/block/volume-plugin.js';
import { hotplugResource, unplugResource } from './hotplug.js';
import type { Sandbox } from './sandbox.js';

export interface VolumeRequest {
  source: string;
  name?: string;
  driver?: 'virtio-blk' | 'virtio-scsi';
  readonly?: boolean;
  fstype?: string;
  options?: string[];
  mountPoint?: string;
}

/** How long the guest may take to release a device (Kata: 10 s). */
const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;

const idOf = (name: string): string => `vol:${name}`;

function defaultName(source: string): string {
  const base = source.split('/').filter(Boolean).pop() ?? 'vol';
  const cleaned = base.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  return cleaned || 'vol';
}

export function addVolume(sb: Sandbox, req: VolumeRequest): Promise<VolumeResources> {
  return sb.serialize(async () => {
    sb.requireRunning('add a volume');
    const q = sb.config.hypervisor;
    const name = validateId(req.name ?? defaultName(req.source), 'volume name');
    if (sb.journal.has(idOf(name))) {
      throw new KataError('E_INVALID_ARGUMENT', `sandbox ${sb.id} already has a volume ${name}; give another --name`, { name });
    }
    const config: VolumeConfig = {
      name,
      source: req.source,
      driver: req.driver ?? q.blockDeviceDriver,
      readonly: req.readonly ?? false,
      fstype: req.fstype ?? 'ext4',
      options: req.options ?? [],
      ...(req.mountPoint ? { mountPoint: req.mountPoint } : {}),
      cache: q.blockCache,
    };
    const att = await hotplugResource(sb, 'volume', idOf(name), config, async (a) => {
      await sb.agent.addStorages(a.guest.storages ?? []);
    });
    return att.resources;
  });
}

export function removeVolume(sb: Sandbox, name: string, timeoutMs = DEFAULT_UNPLUG_TIMEOUT_MS): Promise<void> {
  return sb.serialize(async () => {
    sb.requireRunning('remove a volume');
    const rec = sb.journal.records('volume').find((r) => r.data.resources.name === name);
    if (!rec) {
      throw new KataError('E_INVALID_ARGUMENT', `sandbox ${sb.id} has no volume ${name}; see \`kata-resources volume list ${sb.id}\``, {
        name,
      });
    }
    await sb.agent.removeStorages((rec.data.guest.storages ?? []).map((s) => s.mount_point));
    await unplugResource(sb, 'volume', rec.id, rec.data, { timeoutMs });
  });
}

export function listVolumes(sb: Sandbox): VolumeResources[] {
  return sb.journal.records('volume').map((r) => r.data.resources);
}
