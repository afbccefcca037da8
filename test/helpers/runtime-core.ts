import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { silentLogger } from '../../host/log.js';
import { ensureGuestKit, type GuestKit } from '../../runtime-core/guest-kit/index.js';

export interface LogLine {
  level: number;
  msg: string;
  key?: string;
  file?: string;
}

/** A pino logger that keeps what it writes, for assertions on warnings. */
export function capturingLogger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write: (s: string) => {
        lines.push(JSON.parse(s) as LogLine);
      },
    },
  );
  return { log, lines };
}

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/** A temp dir (prefix krt-) removed when the test ends. */
export function tempDir(t: Teardownable, tag = 'cfg'): string {
  const dir = mkdtempSync(join(tmpdir(), `krt-${tag}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function writeFile(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/**
 * The embedded guest kit for tests that boot it, or why it is not there (a tap `skip` reason:
 * tests that need a guest skip with that reason instead of failing on a machine without a kit).
 */
export async function guestKitOrSkip(): Promise<{ kit: GuestKit | undefined; skip: string | false }> {
  try {
    return { kit: await ensureGuestKit({ log: silentLogger() }), skip: false };
  } catch (e) {
    return { kit: undefined, skip: `the guest kit is not available: ${(e as Error).message}` };
  }
}
