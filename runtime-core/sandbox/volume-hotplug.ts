/**
 * Block volumes on a running sandbox (`kata-resources volume add|del|list`): a host block device,
 * an image file or an NBD export hot-plugged as virtio-blk or virtio-scsi through the generic
 * hotplug sequence, then mounted by the agent (which waits for the device at its PCI path or SCSI
 * address). An export is probed first with the protocol client (nbd/): it must exist, and a
 * read-only one only makes a read-only volume. Removal is the inverse: the agent unmounts, the
 * device is unplugged (bounded wait for the guest to release it; E_TIMEOUT keeps the record, so
 * `volume del` can be retried), the host source is left untouched.
 */
import { isAbsolute } from 'node:path';
import { KataError } from '../../host/errors.js';
import { validateId } from '../../host/names.js';
import { probeNbd } from '../../nbd/probe.js';
import { formatNbdUri, parseNbdUri } from '../../nbd/uri.js';
import type { NbdVolumeSource, VolumeConfig, VolumeResources } from '../../plugins/block/volume-plugin.js';
import type { QemuConfig } from '../config/types.js';
import { hotplugResource, unplugResource } from './hotplug.js';
import type { Sandbox } from './sandbox.js';

/** A path volume names `source`, an NBD volume `nbd` (its URI); exactly one of them. */
export interface VolumeRequest {
  source?: string;
  nbd?: string;
  name?: string;
  driver?: 'virtio-blk' | 'virtio-scsi';
  readonly?: boolean;
  fstype?: string;
  options?: string[];
  mountPoint?: string;
}

/** How long the guest may take to release a device (Kata: 10 s). */
const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;

/** How long the probe of an export may take. */
const NBD_PROBE_TIMEOUT_MS = 10_000;

const idOf = (name: string): string => `vol:${name}`;

function defaultName(source: string): string {
  const base = source.split('/').filter(Boolean).pop() ?? 'vol';
  const cleaned = base.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  return cleaned || 'vol';
}

/**
 * The export behind an NBD URI, probed. QEMU connects from the sandbox's network namespace, where
 * the pod link's traffic is redirected into the guest, so only unix sockets on a path (which the
 * namespace does not change) are accepted; a remote export is reached through a local relay.
 */
async function probedExport(uri: string, q: QemuConfig): Promise<NbdVolumeSource> {
  const addr = parseNbdUri(uri);
  if (addr.transport !== 'unix') {
    throw new KataError(
      'E_UNSUPPORTED',
      `NBD volume ${uri}: QEMU opens exports from the sandbox's network namespace, where TCP to the host or beyond is not reachable; serve it on a unix socket (for a remote export a local relay, e.g. nbdkit -U SOCKET nbd uri=${uri})`,
      { uri },
    );
  }
  if (addr.socket.startsWith('\0')) {
    throw new KataError(
      'E_UNSUPPORTED',
      `NBD volume ${uri}: an abstract socket belongs to a network namespace, and QEMU runs in the sandbox's; use a socket path`,
      { uri },
    );
  }
  if (!isAbsolute(addr.socket)) {
    throw new KataError('E_INVALID_ARGUMENT', `NBD volume ${uri}: the socket must be an absolute path (got "${addr.socket}")`, { uri });
  }
  const p = await probeNbd(addr, { timeoutMs: NBD_PROBE_TIMEOUT_MS });
  return {
    uri: formatNbdUri(addr),
    server: { type: 'unix', path: addr.socket },
    export: addr.exportName,
    sizeBytes: p.size,
    exportReadOnly: p.readOnly,
    reconnectDelaySec: q.nbdReconnectDelaySec,
    openTimeoutSec: q.nbdOpenTimeoutSec,
  };
}

export function addVolume(sb: Sandbox, req: VolumeRequest): Promise<VolumeResources> {
  return sb.serialize(async () => {
    sb.requireRunning('add a volume');
    const q = sb.config.hypervisor;
    if ((req.source === undefined) === (req.nbd === undefined))
      throw new KataError('E_INVALID_ARGUMENT', 'a volume needs a source path or an NBD URI (one of them)');
    const fallback = req.source !== undefined ? defaultName(req.source) : defaultName(parseNbdUri(req.nbd!).exportName || 'nbd');
    const name = validateId(req.name ?? fallback, 'volume name');
    if (sb.journal.has(idOf(name))) {
      throw new KataError('E_INVALID_ARGUMENT', `sandbox ${sb.id} already has a volume ${name}; give another --name`, { name });
    }
    const config: VolumeConfig = {
      name,
      source: req.nbd !== undefined ? await probedExport(req.nbd, q) : req.source!,
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
