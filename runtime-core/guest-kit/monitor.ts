/**
 * kata-monitor, the agent's per-process helper (guest/monitor/kata-monitor.c): a subreaper that
 * takes runc's pty master over the console socket and relays it, things Node cannot do. Built
 * static with the host's gcc when the guest kit is built (and by tests that run the agent on the
 * host); no package ships an equivalent small binary (conmon needs glib and its own protocol).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';

/** The C source in the repository (this file is dist/runtime-core/guest-kit/monitor.js once built). */
export const MONITOR_SOURCE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'guest', 'monitor', 'kata-monitor.c');

const CFLAGS = ['-static', '-O2', '-Wall', '-Wextra', '-Werror'];

async function gccVersion(): Promise<string> {
  const r = await run('gcc', ['--version'], { reject: false }).catch(() => undefined);
  if (r?.exitCode !== 0)
    throw new KataError(
      'E_EXEC_NOT_FOUND',
      'gcc is not installed (it builds kata-monitor for the guest kit): apt-get install gcc libc6-dev',
    );
  return r.stdout.split('\n')[0] ?? '';
}

/** What the monitor binary depends on: its source, the flags and the compiler. */
export async function monitorInputsHash(): Promise<string> {
  const src = await readFile(MONITOR_SOURCE);
  return createHash('sha256')
    .update(src)
    .update(CFLAGS.join(' '))
    .update(await gccVersion())
    .digest('hex');
}

export async function buildMonitor(out: string): Promise<void> {
  await gccVersion();
  const r = await run('gcc', [...CFLAGS, '-o', out, MONITOR_SOURCE], { reject: false, timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new KataError('E_EXEC', `gcc could not build kata-monitor from ${MONITOR_SOURCE}: ${r.stderr.trim()}`);
}
