/**
 * Whether to run an entry point (the CLI, the supervisor) from its one-file bundle
 * (scripts/bundle-entries.mjs, part of `npm run build`): `sandbox up` runs two Node processes, and
 * loading their ~150 ES modules one by one cost each about 0.08-0.1 s of CPU more than one CommonJS
 * file (measured: the supervisor to the end of its imports 175 ms of CPU, bundled 96 ms, `node -e 0`
 * 54 ms). The bundle is used when it is at least as new as tsc's output of the same entry, so a `tsc`
 * run after the last full build is never shadowed by an older bundle; KATA_RESOURCES_BUNDLES=off
 * runs the ES modules (comparisons, debugging). A V8 code cache of the bundles (every function
 * compiled) was measured too and saved nothing measurable (95 ms against 96 ms): not used.
 */
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
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

/** Run a bundle (it runs its entry's top level when required). */
export function runBundle(file: string): void {
  createRequire(file)(file);
}
