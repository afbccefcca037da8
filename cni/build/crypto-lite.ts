import { closeSync, openSync, readSync } from 'node:fs';

/**
 * Stand-in for `node:crypto` inside the bundled kata-cni only (cni/build/bundle.mjs). The code a CNI
 * call reaches uses one function of it, randomBytes (scratch interface names, random MACs), while
 * loading node:crypto compiles some twenty internal modules at every start (about 3.5 ms here).
 * This reads the same kernel randomness from /dev/urandom. Only randomBytes is exported, so any
 * other use of node:crypto in the bundle fails the build instead of misbehaving.
 */
export function randomBytes(size: number): Buffer {
  if (!Number.isInteger(size) || size < 0) throw new RangeError(`randomBytes: size must be a non-negative integer, got ${size}`);
  const buf = Buffer.alloc(size);
  const fd = openSync('/dev/urandom', 'r');
  try {
    let off = 0;
    while (off < size) off += readSync(fd, buf, off, size - off, null);
  } finally {
    closeSync(fd);
  }
  return buf;
}
