/**
 * Small residues (red-team D20): a start that cannot write its first state (a full file system)
 * leaves no sandbox directory; `down` of an id without state removes an empty directory such a
 * start left when it died, but not one with files in it; `down` never removes the log of a start
 * that is still under way (a live process writes it) and removes it once nobody does; a supervisor
 * stopped with SIGTERM takes its sandbox down and its log with it.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { StateStore } from '../../../runtime-core/state/store.js';
import { guestKitOrSkip } from '../../helpers/runtime-core.js';
import { cli, parseJson, pidAlive, residue, tempRuntime, viewPids, waitFor } from '../../helpers/sandbox.js';

const { skip } = await guestKitOrSkip();

t.test('a start on a full state file system leaves no sandbox directory', async (t) => {
  const rt = tempRuntime(t);
  const fsDir = join(rt.dir, 'small');
  mkdirSync(fsDir);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'krt-full', fsDir]);
  t.teardown(() => run('umount', [fsDir], { reject: false }));
  const store = new StateStore(join(fsDir, 'state'));
  mkdirSync(store.sandboxesDir, { recursive: true });
  await run('sh', ['-c', `dd if=/dev/zero of=${join(fsDir, 'fill')} bs=4k 2>/dev/null; true`]);
  await t.rejects(store.create('krt-full'), { code: 'E_STATE', message: /ENOSPC, the file system is full/ });
  t.same(readdirSync(store.sandboxesDir), [], 'the directory made for it is gone');
});

t.test('down of an id without state: an empty leftover directory goes, one with files stays', async (t) => {
  const rt = tempRuntime(t);
  const store = new StateStore(rt.stateDir);
  const c = ['--config', rt.config];
  mkdirSync(store.sandboxDir('krt-empty'), { recursive: true });
  const d = await cli(['sandbox', 'down', 'krt-empty', ...c]);
  t.equal(d.code, 0);
  t.match(d.stdout, /not found; nothing to do/);
  t.notOk(existsSync(store.sandboxDir('krt-empty')), 'the empty directory is gone');
  mkdirSync(store.sandboxDir('krt-full'), { recursive: true });
  writeFileSync(join(store.sandboxDir('krt-full'), 'console.log'), 'not ours to judge');
  t.equal((await cli(['sandbox', 'down', 'krt-full', ...c])).code, 0);
  t.ok(existsSync(join(store.sandboxDir('krt-full'), 'console.log')), 'a directory with files in it is left alone');
});

t.test('down spares the log of a start under way, and removes it once nobody writes it', async (t) => {
  const rt = tempRuntime(t);
  const store = new StateStore(rt.stateDir);
  const c = ['--config', rt.config];
  const log = store.logPath('krt-starting');
  mkdirSync(join(rt.stateDir, 'logs'), { recursive: true });
  // As `up` does: the log opened, a child (the supervisor) writing to it, no state yet.
  const fd = openSync(log, 'a');
  const writer = spawn('sleep', ['60'], { stdio: ['ignore', 'ignore', fd] });
  closeSync(fd);
  t.teardown(() => writer.kill('SIGKILL'));
  await waitFor(() => existsSync(`/proc/${writer.pid}/fd/2`), 5000);
  t.equal((await cli(['sandbox', 'down', 'krt-starting', ...c])).code, 0);
  t.ok(existsSync(log), 'the log of the start under way is kept');
  writer.kill('SIGKILL');
  await waitFor(() => !pidAlive(writer.pid!), 5000);
  t.equal((await cli(['sandbox', 'down', 'krt-starting', ...c])).code, 0);
  t.notOk(existsSync(log), 'once nobody writes it, down removes it');
});

t.test('a supervisor stopped with SIGTERM takes its sandbox down and its log with it', { skip }, async (t) => {
  const rt = tempRuntime(t);
  const id = `krt-term-${process.pid}`;
  const c = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, ...c, '--json']);
  t.equal(up.code, 0, `up: ${up.stderr.slice(-400)}`);
  t.teardown(() => cli(['sandbox', 'down', id, ...c]));
  const view = parseJson<{ pids: Record<string, number> }>(up);
  const sup = view.pids.supervisor!;
  t.ok(existsSync(new StateStore(rt.stateDir).logPath(id)), 'its log while it runs');
  process.kill(sup, 'SIGTERM');
  await waitFor(() => !pidAlive(sup), 60_000, 200);
  t.same(await residue(rt, { id, pids: viewPids(view) }), [], 'nothing is left: no state, no log, no process');
});
