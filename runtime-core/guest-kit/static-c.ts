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

/** One file, or the files (C sources and the headers they include from their directory) of one program. */
type Sources = string | readonly string[];
const list = (s: Sources): readonly string[] => (typeof s === 'string' ? [s] : s);

/** What a binary built from `sources` with `defines` depends on: the sources, the flags and the compiler. */
export async function staticCInputsHash(sources: Sources, defines: readonly string[] = []): Promise<string> {
  const h = createHash('sha256');
  for (const f of list(sources)) h.update(await readFile(f));
  return h
    .update([...CFLAGS, ...defines].join(' '))
    .update(await gccVersion())
    .digest('hex');
}

/** gcc -static the `.c` files of `sources` to `out` (their headers are included from beside them); `what` names the program in errors. */
export async function buildStaticC(what: string, sources: Sources, out: string, defines: readonly string[] = []): Promise<void> {
  await gccVersion();
  const files = list(sources);
  const r = await run('gcc', [...CFLAGS, ...defines, '-o', out, ...files.filter((f) => f.endsWith('.c'))], {
    reject: false,
    timeoutMs: 120_000,
  });
  if (r.exitCode !== 0) throw new KataError('E_EXEC', `gcc could not build ${what} from ${files.join(', ')}: ${r.stderr.trim()}`);
}
