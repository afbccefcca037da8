import { readFile, realpath, stat } from 'node:fs/promises';
import { KataError } from './errors.js';

/**
 * Block devices as the kernel names them: a device node's major:minor (from st_rdev) and the
 * sysfs entry /sys/dev/block/MAJ:MIN that exists exactly for the block devices the kernel has.
 */

export interface BlockDevice {
  /** The node with symlinks resolved (e.g. /dev/mapper/pool-snap-3 -> /dev/dm-3). */
  path: string;
  major: number;
  minor: number;
  /** Size in bytes (sysfs `size` is in 512-byte sectors whatever the device's block size). */
  sizeBytes: number;
}

/** Linux's encoding of a dev_t (glibc's gnu_dev_major / gnu_dev_minor), as "MAJ:MIN". */
export function devMajMin(dev: number): { major: number; minor: number } {
  const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >>> 12) & ~0xff);
  return { major, minor };
}

/**
 * The block device at path (symlinks followed), or undefined when path is missing, not a block
 * device node, or a node the kernel has no device for (no /sys/dev/block/MAJ:MIN).
 */
export async function blockDevice(path: string, sysRoot = '/sys'): Promise<BlockDevice | undefined> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    return undefined;
  }
  const s = await stat(real).catch(() => undefined);
  if (!s?.isBlockDevice()) return undefined;
  const { major, minor } = devMajMin(s.rdev);
  const size = await readFile(`${sysRoot}/dev/block/${major}:${minor}/size`, 'utf8').catch(() => undefined);
  if (size === undefined) return undefined;
  return { path: real, major, minor, sizeBytes: Number(size.trim()) * 512 };
}

/** As blockDevice, but a typed error naming `what` when path is not a usable block device. */
export async function requireBlockDevice(path: string, what: string): Promise<BlockDevice> {
  const b = await blockDevice(path);
  if (!b)
    throw new KataError('E_INVALID_ARGUMENT', `${what} ${path} is not a block device (no such node, or no /sys/dev/block entry)`, { path });
  return b;
}
