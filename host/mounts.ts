import { closeSync, readFileSync } from 'node:fs';
import { KataError, isKataError } from './errors.js';
import { run } from './exec.js';
import type { Logger } from './log.js';
import { mountIdOfFd, openExact, realOrSame, within } from './safe-path.js';

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
  /** Further per-mount flags, e.g. nosuid, nodev (applied by mount(8) in a remount right after the bind). */
  options?: readonly string[];
}

/**
 * Bind src onto dst (non-recursive: submounts of src are not carried, so a read-only bind has no
 * writable holes). With readonly, mount(8) binds then remounts dst read-only.
 */
export async function bindMount(src: string, dst: string, opts: BindOptions = {}): Promise<void> {
  const args = [...(opts.noCanonicalize === false ? [] : ['--no-canonicalize']), '--bind'];
  const o = [...(opts.readonly ? ['ro'] : []), ...(opts.options ?? [])];
  if (o.length > 0) args.push('-o', o.join(','));
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
 * Detach the mount on top at `path`, if `path` is a mount point. The path is opened with
 * O_PATH|O_NOFOLLOW and must be named `path` by the kernel (no component was a symlink), the
 * mount id of the open object must be listed in mountinfo at exactly `path`, and umount -l is
 * then given /proc/<pid>/fd/<n>: the kernel detaches the mount that was checked and resolves no
 * name again. Throws E_PATH_UNSAFE (and detaches nothing) when the path does not check out.
 */
export async function detachExact(path: string, table: MountInfo[] = readMountinfo()): Promise<'detached' | 'not-mounted'> {
  const o = openExact(path);
  try {
    const id = mountIdOfFd(o.fd);
    const m = table.find((x) => x.id === id) ?? readMountinfo().find((x) => x.id === id);
    if (!m || m.mountPoint !== path) return 'not-mounted';
    const r = await run('umount', ['--no-canonicalize', '-l', o.procPath], { reject: false, timeoutMs: 10_000 });
    if (r.exitCode !== 0) throw new KataError('E_MOUNT', `cannot unmount ${path} (mount ${id}): ${r.stderr.trim()}`, { path, mountId: id });
    return 'detached';
  } finally {
    closeSync(o.fd);
  }
}

/**
 * Unmount everything at or below dir (a directory of ours: it is resolved once), deepest first,
 * each mount detached exactly (detachExact), repeating while mounts remain (unmounting one may
 * reveal another stacked below, or propagation may have added copies). A mount whose path no
 * longer checks out (a symlink in it) is never touched: E_PATH_UNSAFE names it. Throws E_MOUNT
 * naming what is left when that does not converge.
 */
export async function unmountAllUnder(dir: string, log?: Logger, maxPasses = 8): Promise<number> {
  let count = 0;
  const refused = new Map<string, string>();
  for (let pass = 0; pass < maxPasses; pass++) {
    const table = readMountinfo();
    const points = [...new Set(mountsUnder(dir, table).map((m) => m.mountPoint))].filter((p) => !refused.has(p));
    if (points.length === 0) break;
    for (const p of points) {
      try {
        if ((await detachExact(p, table)) === 'detached') count++;
      } catch (e) {
        if (isKataError(e, 'E_PATH_UNSAFE')) refused.set(p, e.message);
        else if (isKataError(e, 'E_MOUNT')) log?.warn({ err: e, path: p }, 'unmount failed; will retry');
        else throw e;
      }
    }
  }
  const left = mountsUnder(dir);
  if (left.length === 0) return count;
  if (refused.size > 0) {
    throw new KataError(
      'E_PATH_UNSAFE',
      `mounts under ${dir} were left mounted because their paths changed (a symlink was swapped in): ${[...refused.values()].join('; ')}; unmount them by hand after checking`,
      { dir, left: [...refused.keys()] },
    );
  }
  throw new KataError(
    'E_MOUNT',
    `mounts still present under ${dir} after ${maxPasses} passes: ${left.map((m) => m.mountPoint).join(', ')}`,
    { dir },
  );
}
