import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';

/**
 * Write a file atomically: a temp file beside it (O_EXCL, mode 0600), fsync, rename. A reader, or a
 * crash, sees the old content or the new, never a mix. Errors are the file system's own (ENOENT when
 * the directory is gone, ENOSPC, ...); the temp file is removed on any failure. Callers turn them
 * into their own typed errors (the sandbox journal: E_STATE).
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(text);
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
