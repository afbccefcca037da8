/**
 * Which file `sandbox up` starts as the supervisor: the one-file bundle (scripts/bundle-supervisor.mjs,
 * part of `npm run build`; about 0.13 s faster to load than the ES modules) when it is at least as new
 * as tsc's main.js, else main.js itself, so a `tsc` run after the last full build is never shadowed
 * by an older bundle. KATA_RESOURCES_SUPERVISOR=esm forces main.js (comparisons, debugging).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';

function mtime(p: string): number | undefined {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return undefined;
  }
}

/** The supervisor script in `supervisorDir` (dist/runtime-core/supervisor). */
export function supervisorEntry(supervisorDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const main = join(supervisorDir, 'main.js');
  if (env.KATA_RESOURCES_SUPERVISOR === 'esm') return main;
  const bundle = join(supervisorDir, 'supervisor.cjs');
  const b = mtime(bundle);
  const m = mtime(main);
  return b !== undefined && (m === undefined || b >= m) ? bundle : main;
}
