import { lstatSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { KataError } from '../host/errors.js';
import { validateId } from '../host/names.js';

/** Names in a sandbox's shared directory (container ids, share names) and removal of what is left of its tree. */

export function unsafe(message: string, details: Record<string, unknown>): KataError {
  return new KataError('E_PATH_UNSAFE', message, details);
}

/** Container ids become path components: "/" and ".." are refused as unsafe, the rest as invalid names. */
export function checkContainerId(cid: unknown): string {
  if (typeof cid === 'string' && (cid.includes('/') || cid.includes('..') || cid.includes('\0'))) {
    throw unsafe(`container id ${JSON.stringify(cid)} would leave the sandbox's mounts directory ("/" or ".." in it)`, {
      containerId: cid,
    });
  }
  return validateId(cid, 'container id');
}

/** Linux NAME_MAX; the whole name is bounded too, far below PATH_MAX with the sandbox's own prefix. */
const NAME_MAX = 255;
const SHARE_NAME_MAX = 1024;

/**
 * A share name is a relative path that stays in mounts/: no absolute path, no "." or ".." component,
 * components of at most NAME_MAX bytes.
 */
export function checkShareName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.startsWith('/') || name.includes('\0')) {
    throw unsafe(`share destination ${JSON.stringify(name)} must be a relative path inside mounts/`, { name });
  }
  const parts = name.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw unsafe(`share destination ${JSON.stringify(name)} leaves mounts/ or is not normalised (empty, "." or ".." component)`, { name });
  }
  const long = parts.find((p) => Buffer.byteLength(p) > NAME_MAX);
  if (long !== undefined || Buffer.byteLength(name) > SHARE_NAME_MAX) {
    throw new KataError(
      'E_INVALID_NAME',
      `share name ${JSON.stringify(`${name.slice(0, 40)}...`)} is too long: at most ${NAME_MAX} bytes per component and ${SHARE_NAME_MAX} in all`,
      { bytes: Buffer.byteLength(long ?? name) },
    );
  }
  return name;
}

export function safeBase(dest: string | undefined): string {
  const b = basename(dest ?? '').replace(/[^A-Za-z0-9_.-]/g, '_');
  return b === '' || b === '.' || b === '..' ? 'volume' : b.slice(0, 64);
}

/** Remove a tree that should only hold empty directories and empty mount-point files; returns what it left. */
export function removeTreeSafely(path: string, left: string[]): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (st.isDirectory()) {
    for (const e of readdirSync(path)) removeTreeSafely(join(path, e), left);
    try {
      rmdirSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(path);
    }
  } else if ((st.isFile() && st.size === 0) || st.isSymbolicLink() || st.isSocket()) {
    unlinkSync(path);
  } else {
    left.push(path);
  }
}
