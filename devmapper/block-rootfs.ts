/**
 * Kata's block-device rootfs detection (containerd-shim-v2 create.go checkAndMount,
 * virtcontainers isBlockDevice): when a container's rootfs is exactly one mount whose source is a
 * block device the kernel has (after symlinks, an S_IFBLK node with a /sys/dev/block/MAJ:MIN
 * entry) — e.g. /dev/mapper/<pool>-snap-<id> from containerd's devmapper snapshotter — the shim
 * does not mount it on the host but hands the whole device to the VM. `disable_block_device_use`
 * turns this off. Anything else (overlay, several mounts, a regular file) returns undefined and the
 * rootfs is shared as a directory.
 */
import { blockDevice } from '../host/block-device.js';

/** A rootfs mount as containerd's CreateTask sends it (containerd.types.Mount). */
export interface RootfsMount {
  type: string;
  source: string;
  options?: readonly string[];
}

export interface BlockRootfs {
  /** The device node, symlinks resolved (what the hypervisor opens). */
  devicePath: string;
  /** As the mount named it (e.g. /dev/mapper/pool-snap-3). */
  source: string;
  major: number;
  minor: number;
  /** The mount's type: the file system the guest mounts (ext4, xfs). */
  fsType: string;
  /** The mount's options for the guest mount; xfs gets `nouuid` as Kata adds it (snapshots share the UUID). */
  options: string[];
  sizeBytes: number;
}

export interface BlockRootfsOptions {
  /** Kata's `disable_block_device_use`: when true, never a block rootfs. */
  disableBlockDeviceUse: boolean;
  /** sysfs root (tests); default /sys. */
  sysRoot?: string;
}

export async function detectBlockRootfs(mounts: readonly RootfsMount[], opts: BlockRootfsOptions): Promise<BlockRootfs | undefined> {
  if (opts.disableBlockDeviceUse || mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (!m.source || !m.type) return undefined;
  const dev = await blockDevice(m.source, opts.sysRoot);
  if (!dev) return undefined;
  const options = [...(m.options ?? [])];
  if (m.type === 'xfs' && !options.includes('nouuid')) options.push('nouuid');
  return { devicePath: dev.path, source: m.source, major: dev.major, minor: dev.minor, fsType: m.type, options, sizeBytes: dev.sizeBytes };
}
