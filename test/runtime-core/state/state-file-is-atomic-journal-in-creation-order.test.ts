import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { StateStore } from '../../../runtime-core/state/store.js';
import { tempDir } from '../../helpers/runtime-core.js';

const storeModule = fileURLToPath(new URL('../../../runtime-core/state/store.js', import.meta.url));

t.test('create, journal resources in creation order, load them back', async (t) => {
  const store = new StateStore(tempDir(t, 'state'));
  const s = await store.create('sb1', { netns: { path: '/run/netns/krt-x', name: 'krt-x', created: true }, configSource: '/etc/c.toml' });
  t.equal(s.phase, 'creating');
  await store.addResource(s, { id: 'net:eth0', kind: 'tcfilter', data: { tap: 'tap0_kata' } });
  await store.addResource(s, { id: 'virtiofsd', kind: 'virtiofs', data: { socket: '/run/x.sock' } });
  await store.addResource(s, { id: 'vm', kind: 'qemu', data: { pid: 1 } });
  s.processes.qemu = { name: 'qemu', pid: 4242, startTime: 99, file: 'qemu-system-x86_64' };
  s.phase = 'running';
  await store.save(s);

  const back = await store.load('sb1');
  t.same(
    back.resources.map((r) => r.id),
    ['net:eth0', 'virtiofsd', 'vm'],
    'creation order kept',
  );
  t.same(back.resources[0]!.data, { tap: 'tap0_kata' });
  t.equal(back.phase, 'running');
  t.same(back.netns, { path: '/run/netns/krt-x', name: 'krt-x', created: true });
  t.equal(back.processes.qemu!.pid, 4242);
  t.equal(back.configSource, '/etc/c.toml');

  await store.removeResource(back, 'virtiofsd');
  t.same(
    (await store.load('sb1')).resources.map((r) => r.id),
    ['net:eth0', 'vm'],
    'removal persisted',
  );
  await t.rejects(store.addResource(back, { id: 'vm', kind: 'qemu', data: {} }), { code: 'E_INTERNAL' }, 'a resource id is recorded once');
  t.same(
    readdirSync(store.sandboxDir('sb1')).filter((f) => f.includes('.tmp')),
    [],
    'no temp files left',
  );
});

t.test('a reader never sees a half-written state while another process rewrites it', async (t) => {
  const dir = tempDir(t, 'state');
  const store = new StateStore(dir);
  await store.create('busy');
  const doneMark = join(dir, 'writer-done');
  const size = (i: number): number => 2 * 1024 * 1024 + i * 100;
  // Large states, so that a write that is not atomic (truncate, then write) is seen half-done.
  const writer = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `
    const { StateStore } = await import(${JSON.stringify(storeModule)});
    const { writeFileSync } = await import('node:fs');
    const store = new StateStore(${JSON.stringify(dir)});
    const s = await store.load('busy');
    for (let i = 0; i < 150; i++) { s.extra.n = i; s.extra.blob = String(i % 10).repeat(${2 * 1024 * 1024} + i * 100); await store.save(s); }
    writeFileSync(${JSON.stringify(doneMark)}, '');
  `,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const exited = new Promise<number | null>((r) => writer.on('exit', (c) => r(c)));
  let reads = 0;
  let bad = 0;
  const deadline = Date.now() + 120_000;
  // A tight synchronous loop: the reader looks as often as it can.
  while (!existsSync(doneMark) && Date.now() < deadline && writer.exitCode === null) {
    try {
      const parsed = JSON.parse(readFileSync(store.statePath('busy'), 'utf8')) as { extra: { blob?: string; n?: number } };
      const n = parsed.extra.n;
      if (n !== undefined && parsed.extra.blob!.length !== size(n)) bad++;
    } catch {
      bad++;
    }
    reads++;
  }
  t.equal(await exited, 0, 'writer finished');
  t.ok(reads > 10, `${reads} reads raced the writer`);
  t.equal(bad, 0, 'every read parsed and was self-consistent');
  t.equal((await store.load('busy')).extra.n, 149);
  t.same(
    readdirSync(store.sandboxDir('busy')).filter((f) => f.includes('.tmp')),
    [],
    'no temp files left',
  );
});

t.test('load, create and save report what is wrong', async (t) => {
  const store = new StateStore(tempDir(t, 'state'));
  await t.rejects(store.load('nope'), { code: 'E_SANDBOX_NOT_FOUND', message: /no sandbox nope/ });
  t.equal(await store.tryLoad('nope'), undefined);
  await store.create('dup');
  await t.rejects(store.create('dup'), { code: 'E_SANDBOX_EXISTS' });
  writeFileSync(store.statePath('dup'), '{"version": 1, "id": "du');
  await t.rejects(store.load('dup'), { code: 'E_STATE', message: /not valid JSON/ });
  writeFileSync(store.statePath('dup'), JSON.stringify({ version: 1, id: 'other', resources: [] }));
  await t.rejects(store.load('dup'), { code: 'E_STATE', message: /not a version 1 state of sandbox dup/ });
  t.throws(() => store.statePath('../etc'), { code: 'E_INVALID_NAME' }, 'ids cannot escape the state dir');

  const s = await store.create('gone');
  await store.remove('gone');
  await t.rejects(store.save(s), { code: 'E_STATE', message: /does not exist/ }, 'saving after removal fails, leaving nothing');
  t.notOk(existsSync(store.sandboxDir('gone')));
});

t.test('list shows every sandbox, unreadable ones with their error', async (t) => {
  const store = new StateStore(tempDir(t, 'state'));
  t.same(await store.list(), [], 'empty before anything exists');
  await store.create('b');
  await store.create('a');
  mkdirSync(store.sandboxDir('c'));
  writeFileSync(store.statePath('c'), 'garbage');
  mkdirSync(store.sandboxDir('d')); // a directory without state (e.g. removed half-way) is not listed
  const l = await store.list();
  t.same(
    l.map((x) => x.id),
    ['a', 'b', 'c'],
  );
  t.equal(l[0]!.state!.id, 'a');
  t.match(l[2]!.error, /not valid JSON/);
});

t.test('remove deletes the directory, is idempotent, and refuses while something is mounted below', async (t) => {
  const store = new StateStore(tempDir(t, 'state'));
  await store.create('m');
  writeFileSync(join(store.sandboxDir('m'), 'console.log'), 'boot');
  const mnt = join(store.sandboxDir('m'), 'mnt');
  mkdirSync(mnt);
  await run('mount', ['-t', 'tmpfs', 'krt-state-test', mnt]);
  t.teardown(() => run('umount', [mnt], { reject: false }));
  await t.rejects(store.remove('m'), { code: 'E_STATE', message: /still mounted/ });
  t.ok(existsSync(store.statePath('m')), 'state kept when refusing');
  await run('umount', [mnt]);
  await store.remove('m');
  t.notOk(existsSync(store.sandboxDir('m')));
  await store.remove('m');
  t.pass('second remove is a no-op');
});
