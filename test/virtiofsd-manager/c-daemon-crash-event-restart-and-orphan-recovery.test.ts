import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { isAlive, type DaemonRecord } from '../../host/daemon.js';
import { run } from '../../host/exec.js';
import { mountsUnder } from '../../host/mounts.js';
import { resolveVirtiofsConfig } from '../../virtiofsd-manager/config.js';
import { isListening } from '../../virtiofsd-manager/readiness.js';
import { VirtiofsDaemon, type CrashInfo } from '../../virtiofsd-manager/virtiofsd.js';
import { VirtiofsPlugin, type VirtiofsResources } from '../../virtiofsd-manager/plugin.js';
import { memLogger, pluginCtx, tempRoot, virtiofsdPidsMentioning } from './helpers.js';

function opts(root: string, over: Record<string, unknown> = {}) {
  mkdirSync(`${root}/src`, { recursive: true });
  return { ...resolveVirtiofsConfig(over as never), sourceDir: `${root}/src`, socketPath: `${root}/run/vfs.sock`, log: memLogger().log };
}

function nextCrash(v: VirtiofsDaemon, ms = 5000): Promise<CrashInfo> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no crash event within ${ms} ms`)), ms);
    v.once('crash', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
}

t.test('SIGKILL of the daemon raises the crash event at once, with no restart by default; stop afterwards is clean', async (t) => {
  const root = tempRoot(t);
  const o = opts(root, { sandbox: 'namespace' });
  const v = await VirtiofsDaemon.start(o);
  t.teardown(() => v.stop(0));
  const pid = v.pid!;
  const crash = nextCrash(v);
  const t0 = performance.now();
  process.kill(pid, 'SIGKILL');
  const c = await crash;
  t.comment(`crash event ${(performance.now() - t0).toFixed(1)} ms after SIGKILL`);
  t.match(c, { pid, signal: 'SIGKILL', code: null, willRestart: false });
  t.notOk(v.running);
  await v.stop();
  await v.stop();
  t.notOk(existsSync(o.socketPath), 'socket removed after a crash too');
  t.notOk(existsSync(v.state().pidFiles[0]!), 'pid file removed');
  t.same(virtiofsdPidsMentioning(root), [], 'no daemon left');
});

t.test('with a restart policy the daemon comes back on the same socket, and the budget is bounded', async (t) => {
  const root = tempRoot(t);
  const o = opts(root, { sandbox: 'chroot', restart: { maxRestarts: 1, windowMs: 60_000 } });
  const v = await VirtiofsDaemon.start(o);
  t.teardown(() => v.stop(0));
  const first = v.pid!;
  const restarted = new Promise<DaemonRecord>((r) => v.once('restart', r));
  const c1 = nextCrash(v);
  process.kill(first, 'SIGKILL');
  t.equal((await c1).willRestart, true, 'first crash: restarting');
  const rec = await restarted;
  t.not(rec.pid, first, 'a new process');
  t.ok(isAlive(rec));
  t.ok(isListening(o.socketPath), 'listening again');
  const c2 = nextCrash(v);
  process.kill(rec.pid, 'SIGKILL');
  t.equal((await c2).willRestart, false, 'budget spent: the VM must be stopped');
  await v.stop();
  t.same(virtiofsdPidsMentioning(root), []);
});

t.test('a daemon that exits before listening fails start with E_DAEMON_START carrying its stderr', async (t) => {
  const root = tempRoot(t);
  const o = opts(root, { sandbox: 'chroot', extraArgs: ['-o', 'no_such_option_krt'] });
  await t.rejects(VirtiofsDaemon.start(o), {
    code: 'E_DAEMON_START',
    message: /exited \(code \d+\) before listening.*stderr:.*no_such_option_krt/,
  });
  t.notOk(existsSync(o.socketPath));
  t.same(virtiofsdPidsMentioning(root), []);
});

const maker = fileURLToPath(new URL('./orphan-attach.js', import.meta.url));

t.test('a sandbox left by a crashed runtime (daemon, mounts, socket) is found from its state and cleaned', async (t) => {
  const root = tempRoot(t);
  mkdirSync(`${root}/vol/emptydir`, { recursive: true });
  writeFileSync(`${root}/vol/data`, 'keep me');
  writeFileSync(`${root}/vol/empty`, '');
  const r = await run(process.execPath, [maker, root, 'orphan1', `${root}/vol`], { reject: false, timeoutMs: 30_000 });
  const state = JSON.parse(r.stdout.trim().split('\n')[0] ?? 'null') as VirtiofsResources;
  t.ok(state, `fixture printed its state (stderr: ${r.stderr.slice(-300)})`);
  const rec = state.daemon.daemon!;
  t.teardown(async () => {
    if (isAlive(rec)) process.kill(rec.pid, 'SIGKILL');
  });
  t.ok(isAlive(rec), 'the daemon outlived its runtime (pdeathsig off)');
  t.ok(isListening(state.daemon.socketPath), 'still listening');
  t.ok(mountsUnder(state.shared.sandboxDir).length >= 5, 'mounts left behind');
  const plugin = new VirtiofsPlugin();
  await plugin.recover(pluginCtx(state.sandboxId, root, memLogger().log), { kind: 'virtiofs', resources: state, devices: [], guest: {} });
  t.notOk(isAlive(rec), 'daemon stopped');
  t.notOk(existsSync(state.daemon.socketPath), 'socket removed');
  for (const f of state.daemon.pidFiles) t.notOk(existsSync(f), `pid file ${f} removed`);
  t.same(
    mountsUnder(root).map((m) => m.mountPoint),
    [],
    'no mount left',
  );
  t.notOk(existsSync(state.shared.sandboxDir), 'sandbox dir removed');
  t.equal(readFileSync(`${root}/vol/data`, 'utf8'), 'keep me', 'the volume itself is untouched');
  t.ok(existsSync(`${root}/vol/empty`) && existsSync(`${root}/vol/emptydir`), 'even its empty files and dirs');
  await plugin.recover(pluginCtx(state.sandboxId, root, memLogger().log), { kind: 'virtiofs', resources: state, devices: [], guest: {} });
  t.pass('recovering twice is harmless');
});
