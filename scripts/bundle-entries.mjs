#!/usr/bin/env node
// Builds the one-file bundles of the two Node processes of `sandbox up`: the CLI
// (dist/runtime-core/cli/cli.cjs from cli/cli.ts) and the per-sandbox supervisor
// (dist/runtime-core/supervisor/main.cjs from supervisor/main.ts), each entry and everything it
// reaches as ONE CommonJS file. Loading ~150 ES modules one by one took about 0.1 s more per process
// than one file (measured under load: supervisor 0.30 s against 0.17 s to the end of its imports, the
// CLI 0.26 s against 0.15 s for a `sandbox status`, `node -e 0` 0.12 s). Each is used only when it is
// not older than tsc's output (cli/bundle-entry.ts; the launchers are cli/main.ts and supervisor/start.ts). Each module's `import.meta.url` becomes the URL
// of its own file under dist/, so paths found from it (the supervisor script, the guest kit's
// sources, build-info.json) are what the unbundled code finds.
// Usage: node scripts/bundle-entries.mjs
import { readFile, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NODE_BUNDLE_OPTIONS } from './node-bundle-options.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const esbuild = require('esbuild');
const ENTRIES = [
  ['runtime-core/cli/cli.ts', 'dist/runtime-core/cli/cli.cjs'],
  ['runtime-core/supervisor/main.ts', 'dist/runtime-core/supervisor/main.cjs'],
];

/** import.meta.url of a source file -> the URL of its tsc output (dist/<same path>.js). */
const ownUrl = {
  name: 'own-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async (a) => {
      const text = await readFile(a.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const dist = join(root, 'dist', relative(root, a.path)).replace(/\.ts$/, '.js');
      return { contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(dist).href)), loader: 'ts' };
    });
  },
};

for (const [entry, out] of ENTRIES) {
  const outfile = join(root, out);
  const tmp = `${outfile}.${process.pid}.tmp`;
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: [join(root, entry)],
    outfile: tmp,
    ...NODE_BUNDLE_OPTIONS,
    plugins: [ownUrl],
  });
  await rename(tmp, outfile);
  process.stderr.write(`bundle: ${outfile}\n`);
}
