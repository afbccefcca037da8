/**
 * A writer for the cpio "newc" format (what the kernel unpacks as an initramfs). Written here rather
 * than driven through cpio(1) so device nodes (/dev/console) need no mknod on the host and the archive
 * is byte-for-byte reproducible (fixed mtime, inode numbers in order).
 */

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

function header(fields: {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  size: number;
  rmaj: number;
  rmin: number;
  nameSize: number;
}): string {
  return `070701${[fields.ino, fields.mode, 0, 0, fields.nlink, fields.mtime, fields.size, 0, 0, fields.rmaj, fields.rmin, fields.nameSize, 0].map(hex8).join('')}`;
}

/** Build the archive. Paths are relative ("init", "bin/sh"); parents must come before children. */
export function cpioNewc(entries: readonly CpioEntry[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (name: string, mode: number, data: Buffer, nlink: number, rmaj = 0, rmin = 0): void => {
    const nameBuf = Buffer.from(`${name}\0`);
    const h = Buffer.from(
      header({ ino: name === 'TRAILER!!!' ? 0 : ino++, mode, nlink, mtime, size: data.length, rmaj, rmin, nameSize: nameBuf.length }),
      'ascii',
    );
    parts.push(h, nameBuf, pad4(h.length + nameBuf.length), data, pad4(data.length));
  };
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '');
    if (path === '' || path.split('/').includes('..')) throw new Error(`cpio: bad entry path "${e.path}"`);
    switch (e.type) {
      case 'dir':
        push(path, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0), 2);
        break;
      case 'file':
        push(path, S_IFREG | (e.mode ?? 0o644), e.data, 1);
        break;
      case 'symlink':
        push(path, S_IFLNK | 0o777, Buffer.from(e.target), 1);
        break;
      case 'chardev':
        push(path, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), 1, e.major, e.minor);
        break;
    }
  }
  push('TRAILER!!!', 0, Buffer.alloc(0), 1);
  return Buffer.concat(parts);
}
