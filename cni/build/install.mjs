#!/usr/bin/env node
// Installs the bundled plugin as an executable `kata-cni` in a CNI bin directory.
// Usage: npm run install-cni [-- --bin-dir DIR] [--node PATH | --env-shebang]
//   --bin-dir DIR   where to install (default: $CNI_BIN_DIR, else /opt/cni/bin)
//   --node PATH     the Node the plugin runs on (default: the Node running this script)
//   --env-shebang   keep `#!/usr/bin/env node` (node looked up on the runtime's PATH at every call)
// Builds dist/cni/kata-cni.js first when it is missing. The installed file starts with the Node's
// absolute path: a CNI call then skips /usr/bin/env's exec and PATH walk (about 2 ms of a 30 ms
// Node start, bench/cni.ts), needs no `node` on the PATH the runtime gives its plugins, and runs on
// the Node whose V8 made the file's code cache. The copy is atomic (temporary file + rename), so a
// runtime executing the plugin meanwhile never sees a half-written file or ETXTBSY.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const i = args.indexOf('--bin-dir');
const binDir = resolve(i >= 0 && args[i + 1] ? args[i + 1] : process.env.CNI_BIN_DIR || '/opt/cni/bin');
const n = args.indexOf('--node');
const node = n >= 0 && args[n + 1] ? resolve(args[n + 1]) : process.execPath;
const ENV_SHEBANG = '#!/usr/bin/env node';
// The kernel reads at most 255 bytes of a #! line, and splits nothing: a path with blanks cannot go there.
let shebang = args.includes('--env-shebang') ? ENV_SHEBANG : `#!${node}`;
if (shebang.length > 255 || /\s/.test(node)) {
  process.stderr.write(`install-cni: ${node} cannot be a #! line (too long or has blanks): using ${ENV_SHEBANG}\n`);
  shebang = ENV_SHEBANG;
}
const bundle = join(root, 'dist/cni/kata-cni.js');

if (!existsSync(bundle)) {
  const r = spawnSync(process.execPath, [join(root, 'cni/build/bundle.mjs')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
mkdirSync(binDir, { recursive: true });
const dest = join(binDir, 'kata-cni');
const tmp = join(binDir, `.kata-cni.${process.pid}.tmp`);
try {
  const text = readFileSync(bundle, 'latin1');
  if (!text.startsWith(`${ENV_SHEBANG}\n`)) throw new Error(`${bundle} does not start with ${ENV_SHEBANG}: rebuild it (npm run build:cni)`);
  writeFileSync(tmp, shebang + text.slice(ENV_SHEBANG.length), 'latin1');
  chmodSync(tmp, 0o755);
  renameSync(tmp, dest);
} catch (e) {
  rmSync(tmp, { force: true });
  process.stderr.write(`install-cni: cannot install ${dest}: ${e.message}\n`);
  process.exit(1);
}
process.stderr.write(`install-cni: installed ${dest} (${shebang})\n`);
