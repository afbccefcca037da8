import { readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KataError } from './errors.js';
import { readMountinfo, type MountInfo } from './mounts.js';

/**
 * Block devices as the kernel names them (a node's major:minor from st_rdev, and the sysfs entry
 * /sys/dev/block/MAJ:MIN that exists exactly for the block devices the kernel has), and what a host
 * path is as a VM disk and whether the host uses it. A guest writing a filesystem the host has
 * mounted (or that a device-mapper device, a swap area or a loop device sits on) corrupts it, so
 * such a source is refused before anything changes. Read from /sys/dev/block, mountinfo,
 * /proc/swaps and the loop devices' backing files; nothing is spawned.
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

export type BlockSourceKind =
  | { kind: 'host-device'; path: string; majMin: string; sizeBytes: number }
  | { kind: 'file'; path: string; sizeBytes: number };

const majMinOf = (rdev: number): string => {
  const { major, minor } = devMajMin(rdev);
  return `${major}:${minor}`;
};

function readTrim(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A regular file or a block device (by its real path), with its size; anything else is E_INVALID_ARGUMENT. */
export function blockSourceOf(path: string, sysfs = '/sys'): BlockSourceKind {
  let real: string;
  let st;
  try {
    real = realpathSync(path);
    st = statSync(real);
  } catch (e) {
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `volume source ${path} does not exist (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      { path },
    );
  }
  if (st.isFile()) return { kind: 'file', path: real, sizeBytes: st.size };
  if (st.isBlockDevice()) {
    const majMin = majMinOf(st.rdev);
    const sys = join(sysfs, 'dev', 'block', majMin);
    const sectors = Number(readTrim(join(sys, 'size')) ?? Number.NaN);
    if (!Number.isFinite(sectors)) throw new KataError('E_SYSFS', `block device ${real} (${majMin}) has no ${sys}/size`, { path: real });
    return { kind: 'host-device', path: real, majMin, sizeBytes: sectors * 512 };
  }
  throw new KataError(
    'E_INVALID_ARGUMENT',
    `volume source ${path} is neither a block device nor a regular file; give a disk, a partition, a loop or dm device, or an image file`,
    {
      path,
    },
  );
}

/** The block device and its partitions, as major:minor with their sysfs directories. */
function withPartitions(majMin: string, sysfs: string): { majMin: string; dir: string; name: string }[] {
  const dir = join(sysfs, 'dev', 'block', majMin);
  let name = majMin;
  try {
    name = readlinkSync(dir).split('/').pop() ?? majMin;
  } catch {
    /* keep the number */
  }
  const out = [{ majMin, dir, name }];
  for (const e of list(dir)) {
    const dev = readTrim(join(dir, e, 'dev'));
    if (dev && readTrim(join(dir, e, 'partition')) !== undefined) out.push({ majMin: dev, dir: join(dir, e), name: e });
  }
  return out;
}

/** Every way the host uses a source (empty = free to give to a guest). */
export function hostUsersOf(src: BlockSourceKind, opts: { sysfs?: string; mounts?: MountInfo[]; swaps?: string } = {}): string[] {
  const sysfs = opts.sysfs ?? '/sys';
  const mounts = opts.mounts ?? readMountinfo();
  const users: string[] = [];
  if (src.kind === 'host-device') {
    const swaps = (opts.swaps ?? readTrim('/proc/swaps') ?? '')
      .split('\n')
      .slice(1)
      .map((l) => l.split(/\s+/)[0]);
    for (const d of withPartitions(src.majMin, sysfs)) {
      for (const m of mounts) if (m.dev === d.majMin) users.push(`${d.name} is mounted at ${m.mountPoint}`);
      for (const h of list(join(d.dir, 'holders'))) users.push(`${d.name} is held by ${h}`);
      if (swaps.some((s) => s === `/dev/${d.name}`)) users.push(`${d.name} is a swap area`);
    }
  } else {
    for (const loop of list(join(sysfs, 'block')).filter((n) => n.startsWith('loop'))) {
      const backing = readTrim(join(sysfs, 'block', loop, 'loop', 'backing_file'));
      if (backing === src.path) users.push(`${src.path} is the backing file of /dev/${loop}`);
    }
  }
  return users;
}

/** blockSourceOf, refusing (E_DEVICE_BUSY) a source the host uses. */
export function freeBlockSource(path: string, sysfs = '/sys'): BlockSourceKind {
  const src = blockSourceOf(path, sysfs);
  const users = hostUsersOf(src, { sysfs });
  if (users.length > 0) {
    throw new KataError(
      'E_DEVICE_BUSY',
      `volume source ${path} is in use on the host (${users.join('; ')}); a guest writing it would corrupt it: unmount or release it first`,
      {
        path,
        users,
      },
    );
  }
  return src;
}
