import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { Journal } from '../../../runtime-core/sandbox/journal.js';
import { StateStore } from '../../../runtime-core/state/store.js';
import { tempDir } from '../../helpers/runtime-core.js';

const storeModule = fileURLToPath(new URL('../../../runtime-core/state/store.js', import.meta.url));

const NS = { path: '/run/netns/krt-x', name: 'krt-x', created: true, dev: 4, ino: 4026532000 };
const attached = <R>(kind: string, resources: R) => ({ kind, resources, devices: [], guest: {} });

t.test('create, journal typed records in creation order (intent, then done), load them back typed', async (t) => {
  const store = new StateStore(tempDir(t, 'state'));
  const s = await store.create('sb1', { netns: NS, configSource: '/etc/c.toml' });
  t.equal(s.phase, 'creating');
  const j = new Journal(s, store);
  await j.intend('netns', 'netns', { name: 'krt-x' });
  t.same(
    (await store.load('sb1')).resources.map((r) => [r.id, r.phase]),
    [['netns', 'intent']],
    'the intent is on disk before the resource exists',
  );
  await j.done('netns', 'netns', attached('netns', { name: 'krt-x', path: '/run/netns/krt-x', dev: 4, ino: 4026532000 }));
  await j.intend('virtiofs', 'virtiofs', { root: '/run/kr/shared' });
  await j.intend('vm', 'vm', { resources: { vcpus: 1 } as never, driverConfig: {} });
  s.processes.qemu = { name: 'qemu', pid: 4242, startTime: 99, file: 'qemu-system-x86_64' };
  s.phase = 'running';
  await store.save(s);

  const back = await store.load('sb1');
  t.same(
    back.resources.map((r) => [r.id, r.kind, r.phase]),
    [
      ['netns', 'netns', 'done'],
      ['virtiofs', 'virtiofs', 'intent'],
      ['vm', 'vm', 'intent'],
    ],
    'creation order kept, an intent replaced by its result in place',
  );
  // Read back typed: narrowing by kind and phase gives the plugin's own data type, no cast.
  const ns = back.resources[0]!;
  if (ns.kind === 'netns' && ns.phase === 'done') t.equal(ns.data.resources.ino, 4026532000, 'netns data typed as NetnsResources');
  else t.fail('the first record is the done netns');
  const vfs = back.resources[1]!;
  if (vfs.kind === 'virtiofs' && vfs.phase === 'intent') t.equal(vfs.config.root, '/run/kr/shared', 'an intent keeps its config, typed');
  else t.fail('the second record is the virtiofs intent');
  t.equal(back.phase, 'running');
  t.same(back.netns, NS);
  t.equal(back.processes.qemu!.pid, 4242);
  t.equal(back.configSource, '/etc/c.toml');

  const j2 = new Journal(back, store);
  await j2.forget('virtiofs');
  t.same(
    (await store.load('sb1')).resources.map((r) => r.id),
    ['netns', 'vm'],
    'removal persisted',
  );
  await t.rejects(
    j2.done('netns', 'netns', attached('netns', { name: 'x', path: '/x', dev: 1, ino: 1 })),
    { code: 'E_INTERNAL' },
    'a done record is recorded once',
  );
  t.same(
    readdirSync(store.sandboxDir('sb1')).filter((f) => f.includes('.tmp')),
    [],
    'no temp files left',
  );
});

t.test('a journal of an unknown format version, or with a record of an unknown kind, is E_STATE naming the fix', async (t) => {
  const store = new StateStore(tempDir(t, 'state'));
  await store.create('old');
  const base = JSON.parse(readFileSync(store.statePath('old'), 'utf8')) as Record<string, unknown>;
  writeFileSync(store.statePath('old'), JSON.stringify({ ...base, version: 1 }));
  await t.rejects(store.load('old'), {
    code: 'E_STATE',
    message:
      /state format version 1; this kata-resources reads version 2\. Take sandbox old down with the kata-resources that created it, or stop its processes .* and remove .*old by hand/,
  });
  writeFileSync(store.statePath('old'), JSON.stringify({ ...base, version: 99 }));
  await t.rejects(store.load('old'), { code: 'E_STATE', message: /version 99/ });
  writeFileSync(
    store.statePath('old'),
    JSON.stringify({ ...base, resources: [{ id: 'x', kind: 'warp-drive', phase: 'done', data: { resources: {} }, at: 'now' }] }),
  );
  await t.rejects(store.load('old'), { code: 'E_STATE', message: /unknown kind or shape/ });
  writeFileSync(store.statePath('old'), JSON.stringify({ ...base, resources: [{ id: 'x', kind: 'vm', phase: 'half', at: 'now' }] }));
  await t.rejects(store.load('old'), { code: 'E_STATE', message: /unknown kind or shape/ });
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
    for (let i = 0; i < 150; i++) { s.timings = { n: i }; s.error = { code: 'E_X', message: String(i % 10).repeat(${2 * 1024 * 1024} + i * 100) }; await store.save(s); }
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
      const parsed = JSON.parse(readFileSync(store.statePath('busy'), 'utf8')) as { timings?: { n: number }; error?: { message: string } };
      const n = parsed.timings?.n;
      if (n !== undefined && parsed.error!.message.length !== size(n)) bad++;
    } catch {
      bad++;
    }
    reads++;
  }
  t.equal(await exited, 0, 'writer finished');
  t.ok(reads > 10, `${reads} reads raced the writer`);
  t.equal(bad, 0, 'every read parsed and was self-consistent');
  t.equal((await store.load('busy')).timings?.n, 149);
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
  writeFileSync(store.statePath('dup'), '{"version": 2, "id": "du');
  await t.rejects(store.load('dup'), { code: 'E_STATE', message: /not valid JSON/ });
  writeFileSync(store.statePath('dup'), JSON.stringify({ version: 2, id: 'other', phase: 'running', resources: [], processes: {} }));
  await t.rejects(store.load('dup'), { code: 'E_STATE', message: /not a valid version 2 state of sandbox dup/ });
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
  await t.rejects(store.create('c'), { code: 'E_SANDBOX_EXISTS' }, 'a directory with something in it is not taken');
  t.equal((await store.create('d')).id, 'd', 'an empty directory left by a failed start is taken');
  const l = await store.list();
  t.same(
    l.map((x) => x.id),
    ['a', 'b', 'c', 'd'],
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
