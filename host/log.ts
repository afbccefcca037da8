import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The project's logger: pino, structured, always to stderr (fd 2) so stdout stays for results.
 * Level from KATA_LOG_LEVEL (default "warn"); KATA_LOG_FILE sends logs to a file instead.
 */
let root: Logger | undefined;

export function rootLogger(): Logger {
  if (!root) {
    const level = process.env.KATA_LOG_LEVEL ?? 'warn';
    const file = process.env.KATA_LOG_FILE;
    const dest = file ? pino.destination({ dest: file, sync: true, mkdir: true }) : pino.destination({ fd: 2, sync: true });
    root = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
  }
  return root;
}

/** A logger that drops everything (for tests that do not care). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
