import { closeSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { detachExact } from '../host/mounts.js';
import { mkdirsBeneath, mountIdOfFd, openBeneath, removeEmptyBeneath, walkBeneath } from '../host/safe-path.js';
import type { UndoStack } from '../host/undo.js';

/**
 * Mount points of shares below a sandbox's mounts/ (or shared/) directory, made, found and removed
 * one lstat-checked component at a time (host/safe-path.ts): a name is never resolved through a
 * symlink, wherever one appeared.
 */

/** The mount id of the object at root/<rel> (opened without following symlinks). */
export function mountIdAt(root: string, rel: string): number {
  const o = openBeneath(root, rel);
  if (!o) throw new KataError('E_INTERNAL', `mount point ${join(root, rel)} vanished`, { path: join(root, rel) });
  try {
    return mountIdOfFd(o.fd);
  } finally {
    closeSync(o.fd);
  }
}

/**
 * Create root/<name> (a directory or an empty file) and its missing parents; undo removes exactly
 * what was made. An existing name is E_INVALID_ARGUMENT, a symlink on the way E_PATH_UNSAFE.
 */
export function makeMountPoint(root: string, name: string, dir: boolean, undo: UndoStack): string {
  const parent = dirname(name);
  const created = parent === '.' ? [] : mkdirsBeneath(root, parent);
  undo.push('remove mount point parents', async () => {
    for (const d of [...created].reverse()) removeEmptyBeneath(root, d.slice(root.length + 1));
  });
  const target = join(root, name);
  let existing;
  try {
    existing = lstatSync(target);
  } catch {
    /* absent: the normal case */
  }
  if (existing) {
    if (existing.isSymbolicLink()) throw new KataError('E_PATH_UNSAFE', `share destination ${target} is a symlink`, { name });
    throw new KataError('E_INVALID_ARGUMENT', `share destination ${target} already exists`, { name });
  }
  if (dir) mkdirSync(target, { mode: 0o755 });
  else writeFileSync(target, '', { mode: 0o644, flag: 'wx' });
  undo.push('remove mount point', async () => void removeEmptyBeneath(root, name));
  return target;
}

/** Remove root/<name> and its now-empty parents (up to root), never following a symlink. */
export function removeMountPoint(root: string, name: string, log: Logger): void {
  if (removeEmptyBeneath(root, name) === 'kept') log.warn({ path: join(root, name) }, 'share mount point not removed (not empty)');
  for (let d = dirname(name); d !== '.'; d = dirname(d)) {
    if (removeEmptyBeneath(root, d) !== 'removed') break;
  }
}

/** Detach whatever is mounted at root/<name> (the share and any mount stacked on it), each checked by mount id. */
export async function detachAt(root: string, name: string): Promise<number> {
  let n = 0;
  for (let i = 0; i < 8; i++) {
    const w = walkBeneath(root, name);
    if (!w || (await detachExact(w.path)) === 'not-mounted') return n;
    n++;
  }
  throw new KataError('E_MOUNT', `${join(root, name)} is still mounted after 8 unmounts`, { path: join(root, name) });
}
