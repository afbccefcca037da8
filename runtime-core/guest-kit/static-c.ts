/**
 * The guest's small C programs (kata-monitor, kata-init), built static with the host's gcc when the
 * guest kit is built: the guest has no libc of its own beyond what node needs, and a static binary
 * starts without the dynamic loader (an exec is costly under TCG). One place for the compiler
 * check, the flags and the inputs hash, so every such binary is rebuilt when any of them changes.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';

/** A C source under guest/ in the repository (this file is dist/runtime-core/guest-kit/static-c.js once built). */
export function guestSource(...parts: string[]): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'guest', ...parts);
}

const CFLAGS = ['-static', '-O2', '-Wall', '-Wextra', '-Werror'];

async function gccVersion(): Promise<string> {
  const r = await run('gcc', ['--version'], { reject: false }).catch(() => undefined);
  if (r?.exitCode !== 0)
    throw new KataError(
      'E_EXEC_NOT_FOUND',
      'gcc is not installed (it builds the guest kit\u2019s C helpers): apt-get install gcc libc6-dev',
    );
  return r.stdout.split('\n')[0] ?? '';
}

/** What a binary built from `source` with `defines` depends on: the source, the flags and the compiler. */
export async function staticCInputsHash(source: string, defines: readonly string[] = []): Promise<string> {
  const src = await readFile(source);
  return createHash('sha256')
    .update(src)
    .update([...CFLAGS, ...defines].join(' '))
    .update(await gccVersion())
    .digest('hex');
}

/** gcc -static `source` to `out`; `what` names the program in errors. */
export async function buildStaticC(what: string, source: string, out: string, defines: readonly string[] = []): Promise<void> {
  await gccVersion();
  const r = await run('gcc', [...CFLAGS, ...defines, '-o', out, source], { reject: false, timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new KataError('E_EXEC', `gcc could not build ${what} from ${source}: ${r.stderr.trim()}`);
}
