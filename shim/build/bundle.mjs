#!/usr/bin/env node
// Builds the containerd shim executable: ONE file, dist/shim/containerd-shim-kata-resources-v2.cjs,
// a CommonJS bundle with a node shebang (installed without extension on containerd's PATH, Node runs
// it as CommonJS). esbuild bundles shim/main.ts with the runtime core, the plugins, ttrpc/ and the
// generated protos. `import.meta.url` (the guest kit finds its sources by it) is pinned to this
// checkout's dist/runtime-core/guest-kit, so the shim builds or finds the same guest kit as the CLI.
// Usage: node shim/build/bundle.mjs [--outfile PATH]
import { chmodSync, mkdirSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NODE_BUNDLE_OPTIONS } from '../../scripts/node-bundle-options.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(join(root, 'package.json'));
const esbuild = require('esbuild');
const args = process.argv.slice(2);
const i = args.indexOf('--outfile');
const outfile = i >= 0 && args[i + 1] ? resolve(args[i + 1]) : join(root, 'dist/shim/containerd-shim-kata-resources-v2.cjs');
const kitUrl = pathToFileURL(join(root, 'dist/runtime-core/guest-kit/index.js')).href;

mkdirSync(dirname(outfile), { recursive: true });
const tmp = `${outfile}.${process.pid}.tmp`;
await esbuild.build({
  absWorkingDir: root,
  entryPoints: [join(root, 'shim/main.ts')],
  outfile: tmp,
  ...NODE_BUNDLE_OPTIONS,
  define: { 'import.meta.url': JSON.stringify(kitUrl) },
});
chmodSync(tmp, 0o755);
renameSync(tmp, outfile);
process.stderr.write(`containerd shim: ${outfile}\n`);
