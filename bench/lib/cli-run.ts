/** Running the project's own CLI from a bench: output collected, wall time measured. */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshBundle } from '../../runtime-core/cli/bundle-entry.js';
import { msSince, now } from './stats.js';

/** dist/runtime-core/cli/main.js beside dist/bench/. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'runtime-core', 'cli', 'main.js');

/**
 * Whether the CLI and the supervisor will run from their one-file bundles (cli/bundle-entry.ts): a
 * `tsc` run after the last `npm run build` makes them stale, and the ES modules then cost each
 * process about 0.08 s more, which a bench should say rather than fold into its figures.
 */
export function bundlesInUse(env: NodeJS.ProcessEnv = process.env): string {
  const dir = dirname(CLI);
  const cli = freshBundle(dir, 'cli', env) !== undefined;
  const sup = freshBundle(join(dir, '..', 'supervisor'), 'main', env) !== undefined;
  if (cli && sup) return 'CLI and supervisor from their bundles';
  const stale = [cli ? '' : 'CLI', sup ? '' : 'supervisor'].filter(Boolean).join(' and ');
  return `${stale} from ES modules (bundles ${env.KATA_RESOURCES_BUNDLES === 'off' ? 'off' : 'stale: run npm run build'})`;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** `node CLI ...args`, from spawn to close. */
export function cliRun(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr, ms: msSince(t0) }));
  });
}
