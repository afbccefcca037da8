#!/usr/bin/env node
// Installs the bundled plugin as an executable `kata-cni` in a CNI bin directory.
// Usage: npm run install-cni [-- --bin-dir DIR] [--node PATH | --env-shebang]
//   --bin-dir DIR   where to install (default: $CNI_BIN_DIR, else /opt/cni/bin)
//   --node PATH     the Node the plugin runs on (default: the Node running this script)
//   --env-shebang   exec `node` from the runtime's PATH at every call instead
// Builds dist/cni/kata-cni.js first when it is missing. The file starts with shell lines
// (cni/build/shell-boot.ts) that start the call's helpers and exec Node: the installed copy names
// the Node by its absolute path there, so a call skips the PATH walk, needs no `node` on the PATH
// the runtime gives its plugins, and runs on the Node whose V8 made the file's code cache. The copy
// is atomic (temporary file + rename), so a runtime executing the plugin meanwhile never sees a
// half-written file or ETXTBSY.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installArgs } from '../../scripts/install-args.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const USAGE = `usage: npm run install-cni [-- --bin-dir DIR] [--node PATH | --env-shebang]
  --bin-dir DIR   where to install (default: $CNI_BIN_DIR, else /opt/cni/bin)
  --node PATH     the Node the plugin runs on (default: the Node running this script)
  --env-shebang   exec \`node\` from the runtime's PATH at every call instead
`;
const { values, flags } = installArgs('install-cni', USAGE, { valued: ['--bin-dir', '--node'], flags: ['--env-shebang'] });
const binDir = resolve(values['--bin-dir'] ?? (process.env.CNI_BIN_DIR || '/opt/cni/bin'));
const node = values['--node'] !== undefined ? resolve(values['--node']) : process.execPath;
if (node.includes('\n')) {
  process.stderr.write(`install-cni: a Node path with a newline cannot be named: ${JSON.stringify(node)}\n`);
  process.exit(2);
}
// The built file execs `node` from PATH (cni/build/shell-boot.ts): its line 2 names it once, so.
const EXEC_NODE = ' exec node ';
const nodeWord = flags.has('--env-shebang') ? 'node' : `'${node.replaceAll("'", "'\\''")}'`;
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
  const line2End = text.indexOf('\n', text.indexOf('\n') + 1);
  const line2 = text.slice(0, line2End);
  if (!text.startsWith('#!/bin/sh\n') || line2.split(EXEC_NODE).length !== 2)
    throw new Error(`${bundle} does not start with kata-cni's shell lines: rebuild it (npm run build:cni)`);
  writeFileSync(tmp, line2.replace(EXEC_NODE, ` exec ${nodeWord} `) + text.slice(line2End), 'latin1');
  chmodSync(tmp, 0o755);
  renameSync(tmp, dest);
} catch (e) {
  rmSync(tmp, { force: true });
  process.stderr.write(`install-cni: cannot install ${dest}: ${e.message}\n`);
  process.exit(1);
}
process.stderr.write(`install-cni: installed ${dest} (exec ${nodeWord})\n`);
