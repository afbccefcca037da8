import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import t, { type Test } from 'tap';
import { isAlive } from '../../host/daemon.js';
import { mountsUnder } from '../../host/mounts.js';
import { isListening } from '../../virtiofsd-manager/readiness.js';
import { VirtiofsPlugin, type VirtiofsCrashEvent } from '../../virtiofsd-manager/plugin.js';
import { memLogger, pluginCtx, tempRoot, vhostUserGetFeatures, virtiofsdPidsMentioning, waitFor } from './helpers.js';

function assertNoResidue(t: Tap, root: string): void {
  t.same(
    mountsUnder(root).map((m) => m.mountPoint),
    [],
    'no mount under the test root',
  );
  t.same(virtiofsdPidsMentioning(root), [], 'no virtiofsd for the test root');
  t.notOk(existsSync(`${root}/kr/sandboxes/sb1`), 'no sandbox dir');
  t.same(existsSync(`${root}/run`) ? readdirSync(`${root}/run`) : [], [], 'no socket');
}
type Tap = Pick<Test, 'same' | 'notOk'>;

t.test(
  'attach gives the device spec, the kataShared Storage and a live daemon; detach removes everything, twice is harmless',
  async (t) => {
    const root = tempRoot(t);
    const p = new VirtiofsPlugin();
    const ctx = pluginCtx('sb1', `${root}/run`, memLogger().log);
    const a = await p.attach(ctx, { root: `${root}/kr` });
    t.teardown(() => p.detach(ctx, a));
    const sock = `${root}/run/virtiofsd.sock`;
    t.equal(a.kind, 'virtiofs');
    t.same(a.devices, [{ kind: 'fs-vhost-user', id: 'virtiofs0', socket: sock, tag: 'kataShared', queueSize: 1024 }]);
    t.same(a.guest, {
      storages: [
        {
          driver: 'virtio-fs',
          driver_options: [],
          source: 'kataShared',
          fstype: 'virtiofs',
          options: [],
          mount_point: '/run/kata-containers/shared/containers/',
        },
      ],
    });
    t.ok(isListening(sock));
    t.equal(statSync(sock).mode & 0o777, 0o600);
    t.equal(a.resources.daemon.sourceDir, `${root}/kr/sandboxes/sb1/shared`, 'the daemon exports shared/');
    t.ok(a.resources.daemon.args.includes(`source=${a.resources.shared.sharedDir}`));
    t.ok(isAlive(a.resources.daemon.daemon!));
    t.same(JSON.parse(JSON.stringify(a.resources)), a.resources, 'resources are plain JSON');

    mkdirSync(`${root}/vol`);
    const v = await p.shareVolume('sb1', { containerId: 'c1', source: `${root}/vol`, destination: '/data', readonly: true });
    t.same(
      p.state('sb1').shared.shares.map((s) => s.name),
      [v.name],
      'state() reflects shares for persistence',
    );
    await t.rejects(p.attach(ctx, { root: `${root}/kr` }), { code: 'E_SANDBOX_EXISTS' });

    await p.detach(ctx, a);
    assertNoResidue(t, root);
    t.notOk(isAlive(a.resources.daemon.daemon!));
    await p.detach(ctx, a);
    t.throws(() => p.state('sb1'), { code: 'E_SANDBOX_NOT_FOUND' });
  },
);

for (const step of ['virtiofs.shared-dir', 'virtiofs.daemon', 'virtiofs.ready']) {
  t.test(`a failure at ${step} undoes what attach did`, async (t) => {
    const root = tempRoot(t);
    const p = new VirtiofsPlugin();
    const ctx = pluginCtx('sb1', `${root}/run`, memLogger().log, (s) => {
      if (s === step) throw new Error(`injected at ${s}`);
    });
    await t.rejects(p.attach(ctx, { root: `${root}/kr` }), { message: `injected at ${step}` });
    assertNoResidue(t, root);
    t.equal(p.sandbox('sb1'), undefined);
  });
}

t.test('a daemon that fails to start undoes the shared dir', async (t) => {
  const root = tempRoot(t);
  const p = new VirtiofsPlugin();
  const ctx = pluginCtx('sb1', `${root}/run`, memLogger().log);
  await t.rejects(p.attach(ctx, { root: `${root}/kr`, extraArgs: ['-o', 'krt_bogus'] }), { code: 'E_DAEMON_START' });
  assertNoResidue(t, root);
});

t.test('a daemon crash reaches plugin subscribers with the sandbox id; detach after it is clean', async (t) => {
  const root = tempRoot(t);
  const p = new VirtiofsPlugin();
  const ctx = pluginCtx('sb1', `${root}/run`, memLogger().log);
  const a = await p.attach(ctx, { root: `${root}/kr`, sandbox: 'chroot' });
  t.teardown(() => p.detach(ctx, a));
  const got = new Promise<VirtiofsCrashEvent>((r) => p.once('crash', r));
  process.kill(a.resources.daemon.daemon!.pid, 'SIGKILL');
  const c = await got;
  t.match(c, { sandboxId: 'sb1', signal: 'SIGKILL', willRestart: false });
  await p.detach(ctx, a);
  assertNoResidue(t, root);
});

t.test('after vmmStopping(), the daemon leaving with its client is not a crash', async (t) => {
  const root = tempRoot(t);
  const p = new VirtiofsPlugin();
  const ctx = pluginCtx('sb1', `${root}/run`, memLogger().log);
  const a = await p.attach(ctx, { root: `${root}/kr`, sandbox: 'chroot' });
  t.teardown(() => p.detach(ctx, a));
  let crashes = 0;
  p.on('crash', () => crashes++);
  p.vmmStopping('sb1');
  await vhostUserGetFeatures(a.resources.daemon.socketPath);
  await waitFor('daemon exit after its client left', () => !p.sandbox('sb1')!.daemon.running);
  await new Promise((r) => setTimeout(r, 150));
  t.equal(crashes, 0, 'no crash event');
  await p.detach(ctx, a);
  assertNoResidue(t, root);
});

t.test('detach by a fresh plugin (runtime restarted) works from the persisted resources', async (t) => {
  const root = tempRoot(t);
  const p1 = new VirtiofsPlugin();
  const ctx = pluginCtx('sb1', `${root}/run`, memLogger().log);
  const a = await p1.attach(ctx, { root: `${root}/kr`, sandbox: 'chroot' });
  mkdirSync(`${root}/vol`);
  await p1.shareRootfs('sb1', 'c1', `${root}/vol`);
  const persisted = JSON.parse(JSON.stringify({ ...a, resources: p1.state('sb1') }));
  const p2 = new VirtiofsPlugin();
  await p2.detach(ctx, persisted);
  assertNoResidue(t, root);
  await p1.detach(ctx, a);
  t.pass('the old live object detaches harmlessly afterwards');
});
