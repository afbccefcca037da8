/**
 * A block volume as a resource plugin: a host block device (loop, device-mapper, NBD, a disk), a
 * regular image file or an NBD export given to the VM as virtio-blk (a PCI device on a root port) or
 * virtio-scsi (a target on the controller), and a Storage the guest agent mounts once the device is
 * there. The host side creates nothing and leaves the source untouched; attach only checks that the
 * host does not use a path source (a guest writing a mounted filesystem would corrupt it), and that a
 * read-write volume is not asked of a read-only export (the caller probed it: the plugin does no
 * I/O). An NBD export is opened by the hypervisor's own NBD client, so its connection lives and dies
 * with the VM. `complete` fills the Storage's source from where the hypervisor put the device (Kata:
 * the PCI path for "blk", "id:lun" for "scsi").
 */
import { posix } from 'node:path';
import type { Storage } from '../../host/agent-types.js';
import { freeBlockSource } from '../../host/block-device.js';
import type { BlockCache, BlockSource, BlockSpec } from '../../host/device-specs.js';
import { KataError } from '../../host/errors.js';
import { validateId } from '../../host/names.js';
import { checkpoint, type Attached, type ResourcePlugin } from '../../host/plugin.js';

/** Where Kata mounts sandbox volumes in the guest. */
export const GUEST_VOLUMES_DIR = '/run/kata-containers/sandbox/volumes';

/** An NBD export as probed by the caller before the volume is made. */
export interface NbdVolumeSource {
  /** The export's canonical URI (what status shows). */
  uri: string;
  server: Extract<BlockSource, { kind: 'nbd' }>['server'];
  export: string;
  /** What the probe found. */
  sizeBytes: number;
  exportReadOnly: boolean;
  reconnectDelaySec: number;
  openTimeoutSec: number;
}

export interface VolumeConfig {
  name: string;
  /** A host block device or regular file (its path), or an NBD export. */
  source: string | NbdVolumeSource;
  driver: 'virtio-blk' | 'virtio-scsi';
  readonly: boolean;
  fstype: string;
  /** Mount options in the guest ("ro" is added for a read-only volume). */
  options: string[];
  /** Guest mount point (default GUEST_VOLUMES_DIR/<name>). */
  mountPoint?: string;
  cache?: BlockCache;
}

export interface VolumeResources {
  name: string;
  /** The source as resolved (real path), or the export's URI. */
  source: string;
  sourceKind: 'host-device' | 'file' | 'nbd';
  sizeBytes: number;
  driver: 'virtio-blk' | 'virtio-scsi';
  readonly: boolean;
  mountPoint: string;
  /** Where the guest found it (PCI path or SCSI address), once hot-plugged. */
  guestDevice?: string;
}

const FSTYPES = new Set(['ext4', 'ext3', 'ext2', 'xfs', 'btrfs', 'vfat', 'iso9660', 'squashfs', 'erofs']);

function checkConfig(c: VolumeConfig): string {
  validateId(c.name, 'volume name');
  if (!FSTYPES.has(c.fstype)) {
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `volume ${c.name}: filesystem type "${c.fstype}" is not one the guest mounts (${[...FSTYPES].join(', ')})`,
      { fstype: c.fstype },
    );
  }
  for (const o of c.options) {
    if (typeof o !== 'string' || o === '' || /[,\s\0]/.test(o))
      throw new KataError('E_INVALID_ARGUMENT', `volume ${c.name}: mount option ${JSON.stringify(o)} is not valid`, { option: o });
  }
  const mp = c.mountPoint ?? posix.join(GUEST_VOLUMES_DIR, c.name);
  if (!mp.startsWith('/') || mp.split('/').includes('..') || mp === '/') {
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `volume ${c.name}: mount point ${JSON.stringify(mp)} must be an absolute guest path other than / and without ".."`,
      { mountPoint: mp },
    );
  }
  if (typeof c.source !== 'string') checkExport(c.name, c.source, c.readonly);
  return posix.normalize(mp);
}

function checkExport(name: string, s: NbdVolumeSource, readonly: boolean): void {
  if (s.exportReadOnly && !readonly) {
    throw new KataError(
      'E_NBD_READ_ONLY',
      `volume ${name}: NBD export ${s.uri} is read-only, so it cannot be a read-write volume; add --readonly (or serve it writable)`,
      { uri: s.uri },
    );
  }
  if (s.sizeBytes <= 0) throw new KataError('E_INVALID_ARGUMENT', `volume ${name}: NBD export ${s.uri} is empty (size 0)`, { uri: s.uri });
}

/** Where the data is: an NBD export as it is, a path once checked free on the host. */
function resolveSource(c: VolumeConfig, sysfsRoot: string): { block: BlockSource; shown: string; sizeBytes: number } {
  const s = c.source;
  if (typeof s !== 'string') {
    return {
      block: { kind: 'nbd', server: s.server, export: s.export, reconnectDelaySec: s.reconnectDelaySec, openTimeoutSec: s.openTimeoutSec },
      shown: s.uri,
      sizeBytes: s.sizeBytes,
    };
  }
  const src = freeBlockSource(s, sysfsRoot);
  return { block: { kind: src.kind, path: src.path }, shown: src.path, sizeBytes: src.sizeBytes };
}

export const volumePlugin: ResourcePlugin<'volume', VolumeConfig, VolumeResources> = {
  kind: 'volume',
  async attach(ctx, c) {
    const mountPoint = checkConfig(c);
    await checkpoint(ctx, 'volume:check');
    const src = resolveSource(c, ctx.sysfs.root);
    const spec: BlockSpec = {
      kind: 'block',
      id: `vol-${c.name}`,
      source: src.block,
      readonly: c.readonly,
      driver: c.driver,
      format: 'raw',
      ...(c.cache ? { cache: c.cache } : {}),
    };
    const storage: Storage = {
      driver: c.driver === 'virtio-scsi' ? 'scsi' : 'blk',
      driver_options: [],
      source: '',
      fstype: c.fstype,
      options: c.readonly ? [...new Set(['ro', ...c.options])] : c.options,
      mount_point: mountPoint,
    };
    return {
      kind: 'volume',
      resources: {
        name: c.name,
        source: src.shown,
        sourceKind: src.block.kind,
        sizeBytes: src.sizeBytes,
        driver: c.driver,
        readonly: c.readonly,
        mountPoint,
      },
      devices: [spec],
      guest: { storages: [storage] },
    };
  },
  // Nothing was made on the host: the source is the user's and stays as it is (an export's
  // connection belongs to the hypervisor and ends with the device or the VM).
  async detach() {},
  async recover() {},
  complete(a, placed): Attached<VolumeResources> {
    const where = a.resources.driver === 'virtio-scsi' ? placed.scsiAddr : placed.guestPciPath;
    if (!where) throw new KataError('E_INTERNAL', `volume ${a.resources.name}: the hypervisor did not say where it put the device`);
    const storages = (a.guest.storages ?? []).map((s) => ({ ...s, source: where }));
    return { ...a, resources: { ...a.resources, guestDevice: where }, guest: { ...a.guest, storages } };
  },
};
