import { existsSync, mkdirSync, statSync } from 'node:fs';
import t from 'tap';
import { isAlive } from '../../host/daemon.js';
import { resolveVirtiofsConfig } from '../../virtiofsd-manager/config.js';
import { isListening } from '../../virtiofsd-manager/readiness.js';
import { VirtiofsDaemon, type CrashInfo } from '../../virtiofsd-manager/virtiofsd.js';
import { memLogger, tempRoot, vhostUserGetFeatures, virtiofsdPidsMentioning } from './helpers.js';

function opts(root: string, over: Record<string, unknown> = {}) {
  const src = `${root}/src`;
  mkdirSync(src, { recursive: true });
  const cfg = resolveVirtiofsConfig(over as never);
  return { ...cfg, sourceDir: src, socketPath: `${root}/run/vfs.sock`, log: memLogger().log };
}

for (const sandbox of ['chroot', 'namespace'] as const) {
  t.test(
    `C daemon (sandbox=${sandbox}) is ready when listening, socket 0600, stop removes socket and pid file, twice is harmless`,
    async (t) => {
      const root = tempRoot(t);
      const o = opts(root, { sandbox });
      const v = await VirtiofsDaemon.start(o);
      t.teardown(() => v.stop(0));
      t.ok(v.running);
      t.ok(isListening(o.socketPath), 'listening when start() resolves');
      const st = statSync(o.socketPath);
      t.ok(st.isSocket());
      t.equal(st.mode & 0o777, 0o600, 'socket mode 0600');
      const state = v.state();
      t.equal(state.flavor, 'c');
      t.ok(state.daemon && isAlive(state.daemon), 'record is alive');
      t.ok(state.args.includes(`sandbox=${sandbox}`));
      t.ok(existsSync(state.pidFiles[0]!), `the daemon's own pid file ${state.pidFiles[0]} exists`);
      let crashes = 0;
      v.on('crash', () => crashes++);
      await v.stop();
      t.notOk(v.running);
      t.notOk(isAlive(state.daemon!), 'process gone');
      t.notOk(existsSync(o.socketPath), 'socket removed');
      t.notOk(existsSync(state.pidFiles[0]!), 'pid file removed');
      t.same(virtiofsdPidsMentioning(root), [], 'no virtiofsd (nor its sandboxed child) left');
      await v.stop();
      t.equal(crashes, 0, 'a requested stop is not a crash');
    },
  );
}

t.test('the daemon serves a real vhost-user client; its one-shot exit after the client leaves is reported as a crash', async (t) => {
  const root = tempRoot(t);
  const o = opts(root, { sandbox: 'chroot' });
  const v = await VirtiofsDaemon.start(o);
  t.teardown(() => v.stop(0));
  const crashed = new Promise<CrashInfo>((r) => v.once('crash', r));
  const features = await vhostUserGetFeatures(o.socketPath);
  t.ok((features & (1n << 32n)) !== 0n, `VIRTIO_F_VERSION_1 offered (features 0x${features.toString(16)})`);
  t.ok((features & (1n << 30n)) !== 0n, 'VHOST_USER_F_PROTOCOL_FEATURES offered');
  const c = await crashed;
  t.equal(c.willRestart, false);
  t.equal(c.pid, v.state().daemon!.pid);
  await v.stop();
  t.notOk(existsSync(o.socketPath));
});
