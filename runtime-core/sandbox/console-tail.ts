import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** ANSI CSI sequences and the reset ESC c (SeaBIOS clears the screen with them). */
const ESCAPES = new RegExp(`${String.fromCharCode(27)}(\\[[0-9;?]*[A-Za-z]|c)`, 'g');
export const stripTerminalEscapes = (s: string): string => s.replace(ESCAPES, '');

/** Most bytes read from the end of a console log. */
const TAIL_BYTES = 16 * 1024;

/**
 * The last lines of a guest console log, without terminal escapes and carriage returns (SeaBIOS
 * and the kernel write both): what an error caused by the guest quotes, so the reason (a failed
 * mount, a panic) is in the message and not only in the file. Empty when there is no log.
 */
export function consoleTail(path: string, lines = 6): string[] {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return [];
  }
  try {
    const size = fstatSync(fd).size;
    const n = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    return stripTerminalEscapes(buf.toString('utf8'))
      .split(/\r?\n|\r/)
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .slice(-lines);
  } finally {
    closeSync(fd);
  }
}
