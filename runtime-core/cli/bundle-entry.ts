/**
 * Whether to run an entry point (the CLI, the supervisor) from its one-file bundle
 * (scripts/bundle-entries.mjs, part of `npm run build`): `sandbox up` runs two Node processes, and
 * loading their ~150 ES modules one by one took about 0.1 s more in each than one CommonJS file. The
 * bundle is used when it is at least as new as tsc's output of the same entry, so a `tsc` run after
 * the last full build is never shadowed by an older bundle. KATA_RESOURCES_BUNDLES=off runs the ES
 * modules (comparisons, debugging).
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

/** `<dir>/<name>.cjs` when it is fresh against `<dir>/<name>.js`, else undefined. */
export function freshBundle(dir: string, name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.KATA_RESOURCES_BUNDLES === 'off') return undefined;
  const bundle = join(dir, `${name}.cjs`);
  const b = mtime(bundle);
  const m = mtime(join(dir, `${name}.js`));
  return b !== undefined && (m === undefined || b >= m) ? bundle : undefined;
}

/** The supervisor script in `supervisorDir` (dist/runtime-core/supervisor): its bundle when fresh, else main.js. */
export function supervisorEntry(supervisorDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return freshBundle(supervisorDir, 'main', env) ?? join(supervisorDir, 'main.js');
}
