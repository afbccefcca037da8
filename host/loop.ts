import { stat } from 'node:fs/promises';
import { devMajMin } from './block-device.js';
import { KataError } from './errors.js';
import { run } from './exec.js';

/**
 * Loop devices through losetup (util-linux). A loop device is named by the kernel, so the only way
 * to know one is ours is its backing file: callers keep the file's identity (device + inode) from
 * when they attached it, and detachLoopOf() detaches only loop devices whose backing file still has
 * that identity. A loop device someone else attached to another file, or to a file that replaced
 * ours at the same path, is never touched.
 */

export interface LoopDevice {
  /** /dev/loopN */
  device: string;
  /** Backing file as losetup reports it ("(deleted)" suffix removed). */
  backingFile: string;
  /** Inode and major:minor of the file system holding the backing file. */
  backingIno: number;
  backingDev: string;
}

/** The identity of a file: what a loop device's backing file is compared with. */
export interface FileIdentity {
  path: string;
  ino: number;
  /** "MAJ:MIN" of the file system holding it. */
  dev: string;
}

const LOSETUP_TIMEOUT_MS = 30_000;

function majMin(dev: number): string {
  const { major, minor } = devMajMin(dev);
  return `${major}:${minor}`;
}

/** The identity of the file at path now (E_INVALID_ARGUMENT when it is missing). */
export async function fileIdentity(path: string): Promise<FileIdentity> {
  try {
    const s = await stat(path);
    return { path, ino: s.ino, dev: majMin(s.dev) };
  } catch (e) {
    throw new KataError('E_INVALID_ARGUMENT', `${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { path });
  }
}

/** Attach a file to the first free loop device (`losetup --find --show`); returns /dev/loopN. */
export async function attachLoop(file: string, opts: { readOnly?: boolean } = {}): Promise<string> {
  const args = ['--find', '--show', ...(opts.readOnly ? ['--read-only'] : []), file];
  const r = await run('losetup', args, { timeoutMs: LOSETUP_TIMEOUT_MS });
  const dev = r.stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(dev)) throw new KataError('E_INTERNAL', `losetup ${args.join(' ')} printed "${dev}", not a loop device`);
  return dev;
}

/** Every attached loop device (`losetup --list --json`). */
export async function listLoops(): Promise<LoopDevice[]> {
  const r = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN'], {
    timeoutMs: LOSETUP_TIMEOUT_MS,
  });
  if (r.stdout.trim() === '') return [];
  const j = JSON.parse(r.stdout) as { loopdevices?: Record<string, unknown>[] };
  return (j.loopdevices ?? []).map((l) => ({
    device: String(l.name),
    backingFile: String(l['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
    backingIno: Number(l['back-ino']),
    backingDev: String(l['back-maj:min'] ?? '').trim(),
  }));
}

/** Loop devices whose backing file is exactly `file` (same inode on the same file system). */
export async function loopsOf(file: FileIdentity): Promise<LoopDevice[]> {
  return (await listLoops()).filter((l) => l.backingIno === file.ino && l.backingDev === file.dev);
}

/**
 * Detach `device` if (and only if) it is backed by `file`; true when it was detached, false when
 * it is not attached or backed by something else. A busy device (mounted, held by device-mapper)
 * is an E_EXEC error naming it.
 */
export async function detachLoopOf(device: string, file: FileIdentity): Promise<boolean> {
  const l = (await listLoops()).find((x) => x.device === device);
  if (!l || l.backingIno !== file.ino || l.backingDev !== file.dev) return false;
  await run('losetup', ['--detach', device], { timeoutMs: LOSETUP_TIMEOUT_MS });
  return true;
}
