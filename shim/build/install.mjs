#!/usr/bin/env node
// Installs the bundled shim as `containerd-shim-kata-resources-v2` in a directory on containerd's
// PATH (containerd looks the binary up by the runtime name io.containerd.kata-resources.v2).
// Usage: npm run install-shim [-- --bin-dir DIR]   (default /usr/local/bin)
// The copy is atomic (temporary file + rename): a containerd starting the shim meanwhile never sees
// half a file.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installArgs } from '../../scripts/install-args.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const USAGE = `usage: npm run install-shim [-- --bin-dir DIR]
  --bin-dir DIR   where to install (default: /usr/local/bin, on containerd's PATH)
`;
const { values } = installArgs('install-shim', USAGE, { valued: ['--bin-dir'] });
const binDir = resolve(values['--bin-dir'] ?? '/usr/local/bin');
const bundle = join(root, 'dist/shim/containerd-shim-kata-resources-v2.cjs');
if (!existsSync(bundle)) {
  const r = spawnSync(process.execPath, [join(root, 'shim/build/bundle.mjs')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
mkdirSync(binDir, { recursive: true });
const dest = join(binDir, 'containerd-shim-kata-resources-v2');
const tmp = join(binDir, `.containerd-shim-kata-resources-v2.${process.pid}.tmp`);
try {
  copyFileSync(bundle, tmp);
  chmodSync(tmp, 0o755);
  renameSync(tmp, dest);
} catch (e) {
  rmSync(tmp, { force: true });
  process.stderr.write(`install-shim: cannot install ${dest}: ${e.message}\n`);
  process.exit(1);
}
process.stderr.write(`install-shim: installed ${dest}\n`);
