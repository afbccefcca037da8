import { spawn } from 'node:child_process';
import t from 'tap';
import { spawnCount } from '../../host/exec.js';
import { CoprocessNetlink, helperArgv } from '../../host/netlink.js';
import { tempNetns } from '../helpers/netns.js';

/**
 * What kata-cni relies on from CoprocessNetlink: a helper started before the netlink existed (with
 * exactly helperArgv's command line) is adopted instead of spawning another; one started with
 * another command line is killed and replaced; with ipDetails, reads asking for -details are
 * served by the helper; and with requestTimeoutMs a helper that stops answering is killed and its
 * requests fail with E_EXEC_TIMEOUT instead of hanging.
 */
t.test('a prestarted helper with the expected command line is adopted: no spawn, -details reads served', async (t) => {
  const ns = await tempNetns(t, 'adopt');
  const [file, args] = helperArgv('ip', ns, true);
  const early = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const nl = new CoprocessNetlink(500, { ipDetails: true, adopt: (tool) => (tool === 'ip' ? early : undefined) });
  t.teardown(() => nl.close());
  const before = spawnCount();
  await nl.batch('ip', ns, ['tuntap add dev kadopt0 mode tap']);
  const links = await nl.json<{ ifname: string; linkinfo?: { info_kind?: string } }[]>('ip', ns, [
    '-details',
    'addr',
    'show',
    'dev',
    'kadopt0',
  ]);
  t.equal(links[0]?.linkinfo?.info_kind, 'tun', 'the -details read came back with link details');
  t.equal(spawnCount() - before, 0, 'no process spawned: the helper was adopted and served the -details read');
  t.equal(nl.helperPid('ip', ns), early.pid, 'the helper is the prestarted process');
});

t.test('a prestarted helper with another command line is killed and replaced', async (t) => {
  const ns = await tempNetns(t, 'adopt');
  const [ip] = helperArgv('ip', ns);
  const wrong = spawn(ip, ['-n', ns.name!, '-batch', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<string | null>((r) => wrong.on('exit', (_c, sig) => r(sig)));
  const nl = new CoprocessNetlink(500, { adopt: () => wrong });
  t.teardown(() => nl.close());
  const before = spawnCount();
  t.same(await nl.batch('ip', ns, ['link set lo up']), [null]);
  t.equal(spawnCount() - before, 1, 'a helper of its own was spawned');
  t.not(nl.helperPid('ip', ns), wrong.pid);
  t.equal(await exited, 'SIGKILL', 'the mismatched one was killed');
});

t.test('a helper that stops answering is killed after requestTimeoutMs: E_EXEC_TIMEOUT', async (t) => {
  const ns = await tempNetns(t, 'stuck');
  const nl = new CoprocessNetlink(500, { requestTimeoutMs: 300 });
  t.teardown(() => nl.close());
  t.same(await nl.batch('ip', ns, ['link set lo up']), [null], 'answers while it runs');
  const pid = nl.helperPid('ip', ns)!;
  process.kill(pid, 'SIGSTOP');
  await t.rejects(nl.batch('ip', ns, ['link set lo up']), { code: 'E_EXEC_TIMEOUT', message: /ip -n krt-stuck-\S+ -force -json -batch -/ });
  const gone = async (): Promise<boolean> => {
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  };
  t.ok(await gone(), 'the stuck helper is gone');
  t.same(await nl.batch('ip', ns, ['link set lo up']), [null], 'the next request gets a fresh helper');
});
