/**
 * The guest's console (kernel, kata-init and the agent, which writes its log to the console) into
 * the sandbox log, one pino line per console line with `source: "guest"`, as Kata forwards its
 * agent's log. The console file is QEMU's (chardev file); it is polled from where the last read
 * stopped, so a line is forwarded once, and the sandbox keeps the file itself for diagnosis.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { Logger } from '../../host/log.js';
import { stripTerminalEscapes } from '../sandbox/console-tail.js';

const POLL_MS = 500;
/** Most bytes forwarded per poll (a flood waits for the next one). */
const MAX_READ = 256 * 1024;

export function forwardGuestConsole(path: string, log: Logger): () => void {
  const guest = log.child({ source: 'guest' });
  let offset = 0;
  let partial = '';
  const poll = (): void => {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      return;
    }
    try {
      const size = fstatSync(fd).size;
      if (size <= offset) return;
      const buf = Buffer.alloc(Math.min(size - offset, MAX_READ));
      const n = readSync(fd, buf, 0, buf.length, offset);
      offset += n;
      const lines = (partial + buf.subarray(0, n).toString('utf8')).split(/\r?\n|\r/);
      partial = lines.pop() ?? '';
      for (const l of lines) {
        const line = stripTerminalEscapes(l).trim();
        if (line) guest.info(line);
      }
    } finally {
      closeSync(fd);
    }
  };
  const timer = setInterval(poll, POLL_MS);
  timer.unref();
  poll();
  return () => clearInterval(timer);
}
