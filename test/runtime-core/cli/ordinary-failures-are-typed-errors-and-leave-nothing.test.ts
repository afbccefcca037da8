/**
 * Ordinary failures of the CLI are typed errors with a fix, never E_INTERNAL with a stack
 * (red-team D15): a timeout that is not a number or beyond the agent's 24 h, a JSON file that is
 * not there, an unprivileged caller (EACCES on the state directory), a full state file system on
 * `down` (which also leaves no half-made lock behind) and a closed stdout (EPIPE).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../../host/exec.js';
import { StateStore } from '../../../runtime-core/state/store.js';
import { unprivilegedUser } from '../../helpers/unprivileged-user.js';
import { cli, tempRuntime } from '../../helpers/sandbox.js';

const CLI = fileURLToPath(new URL('../../../runtime-core/cli/main.js', import.meta.url));
const noStack = (s: string): boolean => !/^\s+at /m.test(s) && !s.includes('E_INTERNAL');

t.test('exec --timeout that is not a positive integer up to 24 h is a usage error naming the limit', async (t) => {
  const rt = tempRuntime(t);
  for (const v of ['abc', '1e12', '1000000000000', '0', '86400001']) {
    const r = await cli(['exec', 'krt-none', '--config', rt.config, '--timeout', v, '--', 'true']);
    t.equal(r.code, 2, `--timeout ${v}: exit 2`);
    t.match(r.stderr, `E_INVALID_ARGUMENT: kata-resources exec: --timeout must be a positive integer up to 86400000 (got "${v}")`);
  }
});

t.test('iface add with a JSON file that is not there names the file', async (t) => {
  const rt = tempRuntime(t);
  const r = await cli(['iface', 'add', 'krt-none', '/nonexistent/krt-iface.json', '--config', rt.config]);
  t.equal(r.code, 1);
  t.match(r.stderr, /E_INVALID_ARGUMENT: cannot read \/nonexistent\/krt-iface\.json: ENOENT/);
  t.ok(noStack(r.stderr), 'no stack');
});

t.test('an unprivileged caller gets E_PERMISSION from every command that reads the state', async (t) => {
  const rt = tempRuntime(t);
  const user = await unprivilegedUser(t, 'perm');
  // The config is readable (as /etc files are), the state is root's own.
  chmodSync(rt.dir, 0o755);
  chmodSync(rt.config, 0o644);
  mkdirSync(join(rt.stateDir, 'sandboxes', 'krt-x'), { recursive: true, mode: 0o700 });
  chmodSync(rt.stateDir, 0o700);
  for (const args of [
    ['sandbox', 'list'],
    ['sandbox', 'down', 'krt-x'],
    ['sandbox', 'status', 'krt-x'],
    ['sandbox', 'up', '--id', 'krt-y'],
    ['volume', 'list', 'krt-x'],
  ]) {
    // Without tap's NODE_OPTIONS hooks, which would write tap's own files as the user.
    const r = await user.run(['/usr/bin/env', '-u', 'NODE_OPTIONS', process.execPath, CLI, ...args, '--config', rt.config]);
    t.equal(r.exitCode, 1, `${args.join(' ')}: exit 1`);
    t.match(r.stderr, /E_PERMISSION: cannot .* EACCES \(kata-resources runs as root; run it with sudo\)/, args.join(' '));
    t.ok(noStack(r.stderr), `${args.join(' ')}: no stack: ${r.stderr}`);
  }
  t.same(readdirSync(rt.stateDir), ['sandboxes'], 'nothing was made in the state directory');
});

t.test('down on a full state file system: E_STATE with the fix, no half-made lock; once freed it works', async (t) => {
  const rt = tempRuntime(t);
  const fsDir = join(rt.dir, 'small');
  mkdirSync(fsDir);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'krt-full', fsDir]);
  t.teardown(() => run('umount', [fsDir], { reject: false }));
  const stateDir = join(fsDir, 'state');
  const config = join(rt.dir, 'full.toml');
  writeFileSync(config, `[runtime]\nstate_dir = "${stateDir}"\n`);
  await new StateStore(stateDir).create('krt-full');
  await run('sh', ['-c', `dd if=/dev/zero of=${join(fsDir, 'fill')} bs=4k 2>/dev/null; true`]);
  const r = await cli(['sandbox', 'down', 'krt-full', '--config', config]);
  t.equal(r.code, 1);
  t.match(r.stderr, /E_STATE: cannot take the lock .*krt-full\.lock: ENOSPC, the file system is full; free space there and retry/);
  t.ok(noStack(r.stderr), 'no stack');
  t.same(readdirSync(join(stateDir, 'locks')), [], 'no empty lock file is left to block the next down');
  await run('rm', [join(fsDir, 'fill')]);
  const again = await cli(['sandbox', 'down', 'krt-full', '--config', config]);
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, /sandbox krt-full: removed/);
  t.same(readdirSync(join(stateDir, 'sandboxes')), [], 'its directory is gone');
});

t.test('a stdout closed by the reader ends the output, not the process with an EPIPE stack', async (t) => {
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [CLI, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Closed before node has even started: its first write gets EPIPE.
    p.stdout.destroy();
    let stderr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('close', (code) => resolve({ code, stderr }));
  });
  t.equal(r.code, 0, 'exit 0');
  t.equal(r.stderr, '', 'nothing on stderr');
});
