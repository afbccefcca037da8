/** Running the project's own CLI from a bench: output collected, wall time measured. */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { msSince, now } from './stats.js';

/** dist/runtime-core/cli/main.js beside dist/bench/. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'runtime-core', 'cli', 'main.js');

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
