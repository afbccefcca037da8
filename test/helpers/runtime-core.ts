import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';

export interface LogLine { level: number; msg: string; key?: string; file?: string }

/** A pino logger that keeps what it writes, for assertions on warnings. */
export function capturingLogger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => { lines.push(JSON.parse(s) as LogLine); } });
  return { log, lines };
}

interface Teardownable { teardown(fn: () => unknown): void }

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
