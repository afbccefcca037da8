import { readFileSync, realpathSync } from 'node:fs';
import { KataError, isKataError } from './errors.js';
import { run } from './exec.js';
import type { Logger } from './log.js';

/**
 * Mounts through util-linux mount(8)/umount(8) (argument arrays, never a shell) and
 * /proc/self/mountinfo. Paths given here should be absolute: a relative path would be resolved
 * against the caller's cwd, which may sit below a mount made later.
 */

export interface MountInfo {
  id: number;
  parentId: number;
  /** major:minor of the mounted filesystem's device. */
  dev: string;
  /** Root of the mount within its filesystem. */
  root: string;
  mountPoint: string;
  /** Per-mount options (rw/ro, nosuid, ...). */
  options: string[];
  /** Optional fields: "shared:N", "master:N", "propagate_from:N", "unbindable". */
  propagation: string[];
  fstype: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      dev: f[2]!,
      root: unescapeMountinfo(f[3]!),
      mountPoint: unescapeMountinfo(f[4]!),
      options: f[5]!.split(','),
      propagation: f.slice(6, sep),
      fstype: f[sep + 1]!,
      source: unescapeMountinfo(f[sep + 2]!),
    });
  }
  return out;
}

export function readMountinfo(): MountInfo[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

function realOrSame(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * Mounts at dir or below it, in the order they can be unmounted: deepest mount point first, and
 * for stacked mounts on one point the newest first.
 */
export function mountsUnder(dir: string, table: MountInfo[] = readMountinfo()): MountInfo[] {
  const real = realOrSame(dir);
  const order = new Map(table.map((m, i) => [m.id, i]));
  return table
    .filter((m) => within(m.mountPoint, real) || within(m.mountPoint, dir))
    .sort((a, b) => b.mountPoint.split('/').length - a.mountPoint.split('/').length || order.get(b.id)! - order.get(a.id)!);
}

export function isMountPoint(path: string, table: MountInfo[] = readMountinfo()): boolean {
  const real = realOrSame(path);
  return table.some((m) => m.mountPoint === real);
}

type Propagation = 'private' | 'shared' | 'slave' | 'unbindable';

export interface BindOptions {
  readonly?: boolean;
  /** Propagation of the new mount, applied in the same mount(8) call. */
  propagation?: Propagation;
  /** Pass paths to the kernel as they are (needed for /proc/PID/fd/N sources). Default true. */
  noCanonicalize?: boolean;
}

/**
 * Bind src onto dst (non-recursive: submounts of src are not carried, so a read-only bind has no
 * writable holes). With readonly, mount(8) binds then remounts dst read-only.
 */
export async function bindMount(src: string, dst: string, opts: BindOptions = {}): Promise<void> {
  const args = [...(opts.noCanonicalize === false ? [] : ['--no-canonicalize']), '--bind'];
  if (opts.readonly) args.push('-o', 'ro');
  if (opts.propagation) args.push(`--make-${opts.propagation}`);
  args.push(src, dst);
  try {
    await run('mount', args, { timeoutMs: 10_000 });
  } catch (e) {
    throw new KataError(
      'E_MOUNT',
      `bind mount ${src} -> ${dst}${opts.readonly ? ' (ro)' : ''} failed: ${(e as Error).message}`,
      { src, dst },
      { cause: e },
    );
  }
}

export async function remountReadonly(path: string): Promise<void> {
  try {
    await run('mount', ['--no-canonicalize', '-o', 'remount,bind,ro', path], { timeoutMs: 10_000 });
  } catch (e) {
    throw new KataError('E_MOUNT', `read-only remount of ${path} failed: ${(e as Error).message}`, { path }, { cause: e });
  }
}

export type UnmountOutcome = 'unmounted' | 'detached' | 'not-mounted';

/**
 * Unmount path; when it is busy, detach it lazily (umount -l) so it leaves the tree at once and
 * is freed when its last user goes. A path that is not mounted is not an error.
 */
export async function unmount(path: string, log?: Logger): Promise<UnmountOutcome> {
  const r = await run('umount', ['--no-canonicalize', path], { reject: false, timeoutMs: 10_000 });
  if (r.exitCode === 0) return 'unmounted';
  if (/not mounted|no mount point specified|No such file or directory/i.test(r.stderr)) return 'not-mounted';
  log?.warn({ path, stderr: r.stderr.trim() }, 'unmount failed; detaching lazily');
  const l = await run('umount', ['--no-canonicalize', '-l', path], { reject: false, timeoutMs: 10_000 });
  if (l.exitCode === 0) return 'detached';
  if (/not mounted/i.test(l.stderr)) return 'not-mounted';
  throw new KataError('E_MOUNT', `cannot unmount ${path}: ${r.stderr.trim()} / lazy: ${l.stderr.trim()}`, { path });
}

/**
 * Unmount everything at or below dir, deepest first, repeating while mounts remain (unmounting
 * one may reveal another stacked below, or propagation may have added copies). Throws E_MOUNT
 * naming what is left when that does not converge.
 */
export async function unmountAllUnder(dir: string, log?: Logger, maxPasses = 8): Promise<number> {
  let count = 0;
  const first = mountsUnder(dir);
  if (first.length === 0) return 0;
  // One process for the whole tree when dir itself is a mount point (umount -R goes deepest first).
  if (first.some((m) => m.mountPoint === realOrSame(dir))) {
    const r = await run('umount', ['--no-canonicalize', '-R', realOrSame(dir)], { reject: false, timeoutMs: 10_000 });
    if (r.exitCode === 0) count += first.length - mountsUnder(dir).length;
    else log?.debug({ dir, stderr: r.stderr.trim() }, 'recursive unmount incomplete; unmounting one by one');
  }
  for (let pass = 0; pass < maxPasses; pass++) {
    const left = mountsUnder(dir);
    if (left.length === 0) return count;
    for (const m of left) {
      try {
        const o = await unmount(m.mountPoint, log);
        if (o !== 'not-mounted') count++;
      } catch (e) {
        if (!isKataError(e, 'E_MOUNT')) throw e;
        log?.warn({ err: e, path: m.mountPoint }, 'unmount failed; will retry');
      }
    }
  }
  const left = mountsUnder(dir);
  if (left.length === 0) return count;
  throw new KataError(
    'E_MOUNT',
    `mounts still present under ${dir} after ${maxPasses} passes: ${left.map((m) => m.mountPoint).join(', ')}`,
    { dir },
  );
}
