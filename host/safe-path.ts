import {
  closeSync,
  constants as fsc,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmdirSync,
  type Stats,
  unlinkSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { KataError } from './errors.js';

/**
 * Path resolution that never follows a symlink it was not allowed to follow, for paths below
 * directories a guest can write (virtio-fs shares). Node 20 has no openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) and no O_PATH-relative *at() calls without a native addon, so this walks
 * a path one component at a time with lstat, refuses symlinks, and re-verifies after the effect:
 * an object is opened with O_PATH|O_NOFOLLOW (libuv adds O_CLOEXEC) and the kernel's own name for the open file
 * (/proc/self/fd/N) and its device and inode must be the ones the walk saw. Effects that need a
 * path (mount, umount) are then given /proc/<pid>/fd/N, so the kernel acts on the object that was
 * checked and never re-resolves the name. Hand-written: no npm package does this.
 */

/** O_PATH (Linux; the same value on x86_64 and arm64). Node does not export it. */
const O_PATH = 0o10000000;

function unsafe(message: string, details: Record<string, unknown>): KataError {
  return new KataError('E_PATH_UNSAFE', message, details);
}

/** Whether path is dir or lies below it (plain string comparison of absolute paths). */
export function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** realpath of p, or p itself when it cannot be resolved (missing). For paths the caller trusts. */
export function realOrSame(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** The components of a relative path that must stay below its root: no "", ".", ".." or absolute path. */
function relativeComponents(rel: string, what = 'path'): string[] {
  if (typeof rel !== 'string' || rel.length === 0 || rel.startsWith('/') || rel.includes('\0')) {
    throw unsafe(`${what} ${JSON.stringify(rel)} must be a relative path`, { path: rel });
  }
  const parts = rel.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw unsafe(`${what} ${JSON.stringify(rel)} is not normalised (empty, "." or ".." component)`, { path: rel });
  }
  return parts;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR') throw unsafe(`${dirname(path)} is not a directory`, { path });
    throw e;
  }
}

/**
 * lstat every component of rel below root (root itself is trusted). Refuses a symlink or a
 * non-directory anywhere before the last component; the last may be anything but a symlink.
 * Returns undefined when a component does not exist.
 */
export function walkBeneath(root: string, rel: string): { path: string; st: Stats } | undefined {
  const parts = relativeComponents(rel);
  let path = root;
  for (const [i, p] of parts.entries()) {
    path = join(path, p);
    const st = lstatOrUndefined(path);
    if (!st) return undefined;
    if (st.isSymbolicLink()) throw unsafe(`${path} is a symlink (below ${root}); refusing to follow it`, { path, root });
    if (i < parts.length - 1 && !st.isDirectory()) throw unsafe(`${path} is not a directory (below ${root})`, { path, root });
    if (i === parts.length - 1) return { path, st };
  }
  return undefined;
}

/**
 * Create the missing directories of rel below root one at a time (never `recursive`), each checked
 * to be a real directory after it exists. Returns the directories it created, deepest last, so a
 * caller can remove exactly those again.
 */
export function mkdirsBeneath(root: string, rel: string, mode = 0o755): string[] {
  const created: string[] = [];
  let path = root;
  for (const p of relativeComponents(rel)) {
    path = join(path, p);
    let st = lstatOrUndefined(path);
    if (!st) {
      try {
        mkdirSync(path, { mode });
        created.push(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      st = lstatSync(path);
    }
    if (st.isSymbolicLink()) throw unsafe(`${path} is a symlink (below ${root}); refusing to follow it`, { path, root });
    if (!st.isDirectory()) throw unsafe(`${path} is not a directory (below ${root})`, { path, root });
  }
  return created;
}

export interface OpenedPath {
  /** An O_PATH descriptor of the object; close it with closeSync. */
  fd: number;
  /** The path as the kernel names the open object. */
  path: string;
  st: Stats;
  /** /proc/<pid>/fd/<fd>: give this to mount(8)/umount(8) so they act on exactly this object. */
  procPath: string;
}

/**
 * Open the object at `path` with O_PATH|O_NOFOLLOW and check that it is what the caller saw: the
 * kernel's name for it must be `path` (no component was swapped for a symlink meanwhile) and,
 * when given, its device and inode must match.
 */
export function openExact(path: string, expect?: { dev: number; ino: number }): OpenedPath {
  let fd: number;
  try {
    fd = openSync(path, O_PATH | fsc.O_NOFOLLOW);
  } catch (e) {
    throw new KataError('E_PATH_UNSAFE', `cannot open ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  try {
    const real = readlinkSync(`/proc/self/fd/${fd}`);
    const st = fstatSync(fd);
    if (st.isSymbolicLink()) throw unsafe(`${path} is a symlink; refusing to follow it`, { path });
    if (real !== path) throw unsafe(`${path} changed while it was checked (it now is ${real}); refusing it`, { path, real });
    if (expect && (st.dev !== expect.dev || st.ino !== expect.ino)) {
      throw unsafe(`${path} was replaced while it was checked (another object is there now); refusing it`, { path });
    }
    return { fd, path: real, st, procPath: `/proc/${process.pid}/fd/${fd}` };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** walkBeneath + openExact: the object at rel below root, or undefined when it does not exist. */
export function openBeneath(root: string, rel: string): OpenedPath | undefined {
  const w = walkBeneath(root, rel);
  return w ? openExact(w.path, w.st) : undefined;
}

/** The id of the mount an open descriptor lies on (the first column of /proc/self/mountinfo). */
export function mountIdOfFd(fd: number): number {
  const m = /^mnt_id:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new KataError('E_INTERNAL', `no mnt_id in /proc/self/fdinfo/${fd}`);
  return Number(m[1]);
}

export interface ResolveOptions {
  /** Follow symlinks at all (default false: any symlink in the path is refused). */
  allowSymlinks?: boolean;
  /** Never follow a symlink at or below these directories (e.g. what a guest can write), whatever allowSymlinks says. */
  noFollowBelow?: readonly string[];
}

/**
 * Resolve an absolute path from "/" one component at a time. A symlink is refused unless
 * allowSymlinks, and always when it lies at or below one of noFollowBelow; a refusal names the
 * link and where it points, so the caller can pass the resolved path if it is meant. Returns the
 * canonical path (which may not exist yet past the last existing component: that is an error).
 */
export function resolveStrict(path: string, opts: ResolveOptions = {}): string {
  if (typeof path !== 'string' || !path.startsWith('/') || path.includes('\0')) {
    throw new KataError('E_INVALID_ARGUMENT', `${JSON.stringify(path)} is not an absolute path`, { path });
  }
  const guarded = (opts.noFollowBelow ?? []).map((d) => resolve(d));
  let todo = path.split('/').filter((p) => p !== '' && p !== '.');
  let cur = '/';
  let links = 0;
  while (todo.length > 0) {
    const p = todo.shift()!;
    if (p === '..') {
      cur = dirname(cur);
      continue;
    }
    const next = join(cur, p);
    let st: Stats;
    try {
      st = lstatSync(next);
    } catch (e) {
      throw new KataError('E_INVALID_ARGUMENT', `${path}: ${next}: ${(e as Error).message}`, { path, at: next }, { cause: e });
    }
    if (!st.isSymbolicLink()) {
      if (todo.length > 0 && !st.isDirectory()) throw new KataError('E_INVALID_ARGUMENT', `${path}: ${next} is not a directory`, { path });
      cur = next;
      continue;
    }
    const target = readlinkSync(next);
    const below = guarded.find((g) => within(next, g));
    if (below !== undefined || !opts.allowSymlinks) {
      throw unsafe(
        `${path}: ${next} is a symlink (to ${target})${below !== undefined ? ` below ${below}, which a guest can write` : ''}; symlinks are not followed here: give the resolved path`,
        { path, symlink: next, target, ...(below !== undefined ? { guestWritable: below } : {}) },
      );
    }
    if (++links > 40) throw new KataError('E_INVALID_ARGUMENT', `${path}: too many levels of symlinks`, { path });
    todo = [...target.split('/').filter((x) => x !== '' && x !== '.'), ...todo];
    if (target.startsWith('/')) cur = '/';
  }
  return cur;
}

/**
 * Why a host user other than root may reach `path` (every directory above it lets them search
 * it), or undefined when some directory above is closed to them. Only the directories strictly
 * above `path` count: a guest that can write the shared directory can also change its own mode.
 * A directory is closed when neither "other" nor a group other than root's may search it.
 */
export function reachableByOthers(path: string): string | undefined {
  const open: string[] = [];
  for (let d = dirname(path); ; d = dirname(d)) {
    const st = lstatSync(d);
    const others = (st.mode & 0o001) !== 0;
    const group = (st.mode & 0o010) !== 0 && st.gid !== 0;
    const owner = st.uid !== 0;
    if (!others && !group && !owner) return undefined;
    open.push(`${d} (${(st.mode & 0o7777).toString(8).padStart(4, '0')} ${st.uid}:${st.gid})`);
    if (d === '/') break;
  }
  return `every directory above it can be searched by other users: ${open.join(', ')}`;
}

/**
 * Remove the object at rel below root if it is an empty directory or an empty regular file (a
 * mount point we made), never following a symlink on the way. Returns what happened.
 */
export function removeEmptyBeneath(root: string, rel: string): 'removed' | 'absent' | 'kept' {
  const w = walkBeneath(root, rel);
  if (!w) return 'absent';
  const o = openExact(w.path, w.st);
  try {
    if (o.st.isDirectory()) {
      try {
        rmdirSync(w.path);
        return 'removed';
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return 'absent';
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EBUSY') return 'kept';
        throw e;
      }
    }
    if (o.st.isFile() && o.st.size === 0) {
      unlinkSync(w.path);
      return 'removed';
    }
    return 'kept';
  } finally {
    closeSync(o.fd);
  }
}
