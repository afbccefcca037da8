/**
 * A block volume as a resource plugin: a host block device (loop, device-mapper, NBD, a disk) or a
 * regular image file given to the VM as virtio-blk (a PCI device on a root port) or virtio-scsi (a
 * target on the controller), and a Storage the guest agent mounts once the device is there. The host
 * side creates nothing and leaves the source untouched; attach only checks that the host does not use
 * it (a guest writing a mounted filesystem would corrupt it). `complete` fills the Storage's source
 * from where the hypervisor put the device (Kata: the PCI path for "blk", "id:lun" for "scsi").
 */
import { posix } from 'node:path';
import type { Storage } from '../../host/agent-types.js';
import { freeBlockSource } from '../../host/block-device.js';
import type { BlockCache, BlockSpec } from '../../host/device-specs.js';
import { KataError } from '../../host/errors.js';
import { validateId } from '../../host/names.js';
import { checkpoint, type Attached, type ResourcePlugin } from '../../host/plugin.js';

/** Where Kata mounts sandbox volumes in the guest. */
export const GUEST_VOLUMES_DIR = '/run/kata-containers/sandbox/volumes';

export interface VolumeConfig {
  name: string;
  /** A host block device or regular file. */
  source: string;
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
  /** The source as resolved (real path). */
  source: string;
  sourceKind: 'host-device' | 'file';
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
  return posix.normalize(mp);
}

export const volumePlugin: ResourcePlugin<'volume', VolumeConfig, VolumeResources> = {
  kind: 'volume',
  async attach(ctx, c) {
    const mountPoint = checkConfig(c);
    await checkpoint(ctx, 'volume:check');
    const src = freeBlockSource(c.source, ctx.sysfs.root);
    const spec: BlockSpec = {
      kind: 'block',
      id: `vol-${c.name}`,
      source: { kind: src.kind, path: src.path },
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
        source: src.path,
        sourceKind: src.kind,
        sizeBytes: src.sizeBytes,
        driver: c.driver,
        readonly: c.readonly,
        mountPoint,
      },
      devices: [spec],
      guest: { storages: [storage] },
    };
  },
  // Nothing was made on the host: the source is the user's and stays as it is.
  async detach() {},
  async recover() {},
  complete(a, placed): Attached<VolumeResources> {
    const where = a.resources.driver === 'virtio-scsi' ? placed.scsiAddr : placed.guestPciPath;
    if (!where) throw new KataError('E_INTERNAL', `volume ${a.resources.name}: the hypervisor did not say where it put the device`);
    const storages = (a.guest.storages ?? []).map((s) => ({ ...s, source: where }));
    return { ...a, resources: { ...a.resources, guestDevice: where }, guest: { ...a.guest, storages } };
  },
};
