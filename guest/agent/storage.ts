/**
 * Storage mounts (Kata's `Storage`, agent/src/storage/*): one handler per driver, each resolving the
 * source to something `mount` understands, then creating the mount point and mounting.
 *
 *   virtio-fs  source = tag (kataShared)        mount -t virtiofs TAG MP
 *   9p         source = tag                     mount -t 9p -o trans=virtio TAG MP
 *   blk        source = PCI path "02/00" or /dev/vdX, waits for the disk
 *   mmioblk    source = /dev/vdX
 *   nvdimm     source = /dev/pmemN (options usually ["dax"])
 *   scsi       source = "ID:LUN", waits for /sys/bus/scsi/devices/*:*:ID:LUN/block/sdX
 *   ephemeral  tmpfs at MP
 *   local      a plain directory at MP (options mode=NNNN)
 */
import { constants, readFileSync } from 'node:fs';
import { fsp } from './builtins.js';
import { isAbsolute, join, normalize } from 'node:path';
import type { Storage } from '../../host/agent-types.js';
import { childrenOfKind, pciDeviceDir, waitFor } from './pci-path.js';
import { AgentError, type MountInfo } from './protocol.js';
import type { CommandRunner } from './runner.js';

export interface StorageContext {
  run: CommandRunner;
  /** sysfs root ("/sys"). */
  sysfs: string;
  /** /dev root ("/dev"). */
  dev: string;
  /** The mount table to read ("/proc/self/mounts"). */
  mountsFile: string;
  deviceTimeoutMs?: number;
}

const PSEUDO_FS = new Set([
  'proc',
  'sysfs',
  'devtmpfs',
  'devpts',
  'securityfs',
  'cgroup',
  'cgroup2',
  'pstore',
  'bpf',
  'tracefs',
  'debugfs',
  'mqueue',
  'hugetlbfs',
  'configfs',
  'fusectl',
  'binfmt_misc',
  'autofs',
  'rpc_pipefs',
  'nsfs',
  'efivarfs',
  'ramfs',
  'rootfs',
]);

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function parseMounts(text: string): MountInfo[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [source = '', mp = '', fstype = '', opts = ''] = l.split(' ');
      return { source: unescapeMount(source), mount_point: unescapeMount(mp), fstype, options: opts.split(',').filter(Boolean) };
    });
}

export async function readMounts(mountsFile: string): Promise<MountInfo[]> {
  return parseMounts(await fsp().readFile(mountsFile, 'utf8'));
}

export async function listMounts(ctx: StorageContext): Promise<{ mounts: MountInfo[] }> {
  return { mounts: (await readMounts(ctx.mountsFile)).filter((m) => !PSEUDO_FS.has(m.fstype)) };
}

function checkMountPoint(mp: string): string {
  if (typeof mp !== 'string' || !isAbsolute(mp) || mp.split('/').includes('..') || /[\0\n]/.test(mp)) {
    throw new AgentError('E_INVALID_ARGUMENT', `mount_point "${mp}" must be an absolute path without ".."`);
  }
  return normalize(mp);
}

/**
 * The device file of block device `name` once it can be opened. A disk is listed in sysfs (and its
 * node made by devtmpfs) a moment before the kernel registers its block device: an open, or a
 * mount, in between fails with ENXIO (seen with a hot-plugged SCSI disk under TCG). So it counts as
 * there only when a read-only open succeeds.
 */
async function deviceFile(ctx: StorageContext, name: string): Promise<string | undefined> {
  const p = join(ctx.dev, name);
  try {
    await fsp().readFile(join(ctx.sysfs, 'class', 'block', name, 'dev'), 'utf8');
    const fh = await fsp().open(p, constants.O_RDONLY | constants.O_NONBLOCK);
    await fh.close();
    return p;
  } catch {
    return undefined;
  }
}

async function waitDevPath(ctx: StorageContext, path: string): Promise<string> {
  const name = path.replace(/^\/dev\//, '');
  if (name.includes('/') || name === '') throw new AgentError('E_INVALID_ARGUMENT', `device "${path}" must be /dev/NAME`);
  return waitFor(`block device ${path}`, ctx.deviceTimeoutMs ?? 10_000, () => deviceFile(ctx, name));
}

async function blkSource(ctx: StorageContext, s: Storage): Promise<string> {
  if (s.source.startsWith('/dev/')) return waitDevPath(ctx, s.source);
  return waitFor(`virtio-blk disk at PCI path ${s.source}`, ctx.deviceTimeoutMs ?? 10_000, async () => {
    const dir = await pciDeviceDir(ctx.sysfs, s.source);
    if (!dir) return undefined;
    const disks = await childrenOfKind(dir, 'block');
    return disks[0] ? deviceFile(ctx, disks[0]) : undefined;
  });
}

async function scsiSource(ctx: StorageContext, s: Storage): Promise<string> {
  const m = /^(\d+):(\d+)$/.exec(s.source);
  if (!m) throw new AgentError('E_INVALID_ARGUMENT', `scsi storage source "${s.source}" must be "ID:LUN"`);
  const suffix = `:${m[1]}:${m[2]}`;
  const bus = join(ctx.sysfs, 'bus', 'scsi', 'devices');
  return waitFor(`SCSI disk ${s.source}`, ctx.deviceTimeoutMs ?? 10_000, async () => {
    const entries = await fsp()
      .readdir(bus)
      .catch(() => [] as string[]);
    const dev = entries.find((e) => /^\d+:\d+:\d+:\d+$/.test(e) && e.endsWith(suffix));
    if (!dev) return undefined;
    const disks = await fsp()
      .readdir(join(bus, dev, 'block'))
      .catch(() => [] as string[]);
    return disks[0] ? deviceFile(ctx, disks[0]) : undefined;
  });
}

interface MountPlan {
  fstype: string;
  source: string;
  options: string[];
}

async function plan(ctx: StorageContext, s: Storage): Promise<MountPlan | 'directory'> {
  const options = (s.options ?? []).filter((o) => typeof o === 'string' && o !== '');
  for (const o of options) if (/[,\s]/.test(o)) throw new AgentError('E_INVALID_ARGUMENT', `mount option "${o}" contains a comma or space`);
  switch (s.driver) {
    case 'virtio-fs':
      return { fstype: s.fstype || 'virtiofs', source: s.source || 'kataShared', options };
    case '9p':
      return {
        fstype: '9p',
        source: s.source || 'kataShared',
        options: options.some((o) => o.startsWith('trans=')) ? options : ['trans=virtio', ...options],
      };
    case 'blk':
    case 'virtio-blk':
      return { fstype: s.fstype || 'ext4', source: await blkSource(ctx, s), options };
    case 'mmioblk':
    case 'nvdimm':
      return { fstype: s.fstype || 'ext4', source: await waitDevPath(ctx, s.source), options };
    case 'scsi':
      return { fstype: s.fstype || 'ext4', source: await scsiSource(ctx, s), options };
    case 'ephemeral':
      return { fstype: 'tmpfs', source: s.source || 'tmpfs', options };
    case 'local':
      return 'directory';
    default:
      throw new AgentError(
        'E_INVALID_ARGUMENT',
        `storage driver "${s.driver}" is not supported (virtio-fs, 9p, blk, mmioblk, nvdimm, scsi, ephemeral, local)`,
      );
  }
}

export async function addStorages(ctx: StorageContext, storages: readonly Storage[]): Promise<{ mount_points: string[] }> {
  if (!Array.isArray(storages)) throw new AgentError('E_INVALID_ARGUMENT', 'AddStorages needs params.storages (an array of Kata Storage)');
  const done: string[] = [];
  for (const s of storages) {
    const mp = checkMountPoint(s.mount_point);
    const p = await plan(ctx, s);
    // Read at once, without fs/promises (its first load costs 0.2 s under TCG): the share kata-init
    // mounted at boot (kata.sharefs=) or a retry returns here. The table has no trailing slash.
    if (p !== 'directory') {
      const mounted = parseMounts(readFileSync(ctx.mountsFile, 'utf8')).find((m) => m.mount_point === mp.replace(/(?<=.)\/+$/, ''));
      if (mounted) {
        if (mounted.fstype !== p.fstype)
          throw new AgentError('E_MOUNT', `${mp} is already a ${mounted.fstype} mount of ${mounted.source}; unmount it first`);
        done.push(mp); // the share kata-init mounted, or an idempotent retry
        continue;
      }
    }
    try {
      await fsp().mkdir(mp, { recursive: true });
    } catch (e) {
      throw new AgentError('E_MOUNT', `cannot create mount point ${mp}: ${(e as Error).message}`);
    }
    if (p === 'directory') {
      const mode = (s.options ?? []).map((o: string) => /^mode=([0-7]{3,4})$/.exec(o)?.[1]).find(Boolean);
      if (mode) await fsp().chmod(mp, parseInt(mode, 8));
      done.push(mp);
      continue;
    }
    const args = ['-t', p.fstype, ...(p.options.length ? ['-o', p.options.join(',')] : []), p.source, mp];
    const r = await ctx.run('mount', args, { timeoutMs: 60_000 });
    if (r.exitCode !== 0) throw new AgentError('E_MOUNT', `mount ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    done.push(mp);
  }
  return { mount_points: done };
}

export async function removeStorages(
  ctx: StorageContext,
  storages: readonly Pick<Storage, 'mount_point'>[],
): Promise<Record<string, never>> {
  if (!Array.isArray(storages))
    throw new AgentError('E_INVALID_ARGUMENT', 'RemoveStorages needs params.storages (an array with mount_point)');
  for (const s of storages) {
    const mp = checkMountPoint(s.mount_point);
    while ((await readMounts(ctx.mountsFile)).some((m) => m.mount_point === mp)) {
      const r = await ctx.run('umount', [mp], { timeoutMs: 60_000 });
      if (r.exitCode !== 0) throw new AgentError('E_MOUNT', `umount ${mp}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    }
  }
  return {};
}
