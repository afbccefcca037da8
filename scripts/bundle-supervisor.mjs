#!/usr/bin/env node
// Builds dist/runtime-core/supervisor/supervisor.cjs: the per-sandbox supervisor (supervisor/main.ts
// and everything it reaches) as ONE CommonJS file. `sandbox up` starts a supervisor for every sandbox,
// and loading its ~150 ES modules one by one took about 0.13 s more than this one file (measured:
// 0.30 s against 0.17 s to the end of its imports, `node -e 0` 0.12 s, under load). The CLI starts the
// bundle when it is newer than the tsc output (supervisor-entry.ts), else main.js: a later `tsc` alone
// is never shadowed by an older bundle. Each module's `import.meta.url` becomes the URL of its own
// file under dist/, so paths found from it (the guest kit's sources) are what the unbundled code finds.
// Usage: node scripts/bundle-supervisor.mjs [--outfile PATH]
import { readFile, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const esbuild = require('esbuild');
const args = process.argv.slice(2);
const i = args.indexOf('--outfile');
const outfile = i >= 0 && args[i + 1] ? resolve(args[i + 1]) : join(root, 'dist/runtime-core/supervisor/supervisor.cjs');

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

const tmp = `${outfile}.${process.pid}.tmp`;
await esbuild.build({
  absWorkingDir: root,
  entryPoints: [join(root, 'runtime-core/supervisor/main.ts')],
  outfile: tmp,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: false,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [ownUrl],
  // Loaded only to build a guest kit, from this checkout's node_modules.
  external: ['esbuild'],
});
await rename(tmp, outfile);
process.stderr.write(`supervisor bundle: ${outfile}\n`);
