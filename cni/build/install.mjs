#!/usr/bin/env node
// Installs the bundled plugin as an executable `kata-cni` in a CNI bin directory.
// Usage: npm run install-cni [-- --bin-dir DIR]   (default: $CNI_BIN_DIR, else /opt/cni/bin)
// Builds dist/cni/kata-cni.js first when it is missing. The copy is atomic (temporary file +
// rename), so a runtime executing the plugin meanwhile never sees a half-written file or ETXTBSY.
import { copyFileSync, chmodSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const i = args.indexOf('--bin-dir');
const binDir = resolve(i >= 0 && args[i + 1] ? args[i + 1] : process.env.CNI_BIN_DIR || '/opt/cni/bin');
const bundle = join(root, 'dist/cni/kata-cni.js');

if (!existsSync(bundle)) {
  const r = spawnSync(process.execPath, [join(root, 'cni/build/bundle.mjs')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
mkdirSync(binDir, { recursive: true });
const dest = join(binDir, 'kata-cni');
const tmp = join(binDir, `.kata-cni.${process.pid}.tmp`);
try {
  copyFileSync(bundle, tmp);
  chmodSync(tmp, 0o755);
  renameSync(tmp, dest);
} catch (e) {
  rmSync(tmp, { force: true });
  process.stderr.write(`install-cni: cannot install ${dest}: ${e.message}\n`);
  process.exit(1);
}
process.stderr.write(`install-cni: installed ${dest}\n`);
