/**
 * The supervisor of a running sandbox is killed with SIGKILL (no chance to clean up). QEMU and
 * virtiofsd die with it (setpriv --pdeathsig), `sandbox status` says the supervisor is gone and the
 * sandbox failed, and `sandbox down` cleans everything from the persisted state: the tap and the
 * ingress qdisc in the caller's namespace, the virtio-fs mounts, sockets and the state itself. One
 * TCG boot, through the real CLI.
 */
import t from 'tap';
import { run } from '../../../host/exec.js';
import {
  cli,
  parseJson,
  pidAlive,
  podNetwork,
  residue,
  tempRuntime,
  viewPids,
  waitFor,
  explain,
  type StatusView,
} from '../../helpers/sandbox.js';

t.test('supervisor SIGKILLed: daemons die with it, status says gone/failed, down cleans from state', async (t) => {
  const rt = tempRuntime(t);
  const net = await podNetwork(t, { mtu: 1400 });
  const id = `krt-sup-${process.pid}`;
  const C = ['--config', rt.config];
  const pod = { ns: net.pod, dev: net.ifname };
  const up = await cli(['sandbox', 'up', '--id', id, '--netns', net.pod.name!, ...C, '--json'], { timeoutMs: 240_000 });
  if (up.code !== 0) {
    t.fail(`up failed: ${explain(up)}`);
    return;
  }
  const sb = parseJson<StatusView>(up);
  const pids = viewPids(sb);
  const { supervisor, qemu, virtiofsd } = sb.pids;
  t.ok(supervisor && qemu && virtiofsd, `pids: ${JSON.stringify(sb.pids)}`);
  if (!supervisor || !qemu || !virtiofsd) return;

  process.kill(supervisor, 'SIGKILL');
  await waitFor(() => !pidAlive(supervisor), 10_000).catch(() => {});
  t.notOk(pidAlive(supervisor), 'the supervisor is gone');

  const pdeathsig = (await run('setpriv', ['--help'], { reject: false })).stdout.includes('--pdeathsig');
  if (pdeathsig) {
    await waitFor(() => !pidAlive(qemu) && !pidAlive(virtiofsd), 15_000).catch(() => {});
    t.notOk(pidAlive(qemu), 'QEMU died with its supervisor (pdeathsig)');
    t.notOk(pidAlive(virtiofsd), 'virtiofsd died with its supervisor (pdeathsig)');
  } else {
    t.comment('setpriv has no --pdeathsig here: the daemons are left for `down` to kill from the state');
  }

  const st = await cli(['sandbox', 'status', id, ...C, '--json']);
  t.equal(st.code, 0, `status exits 0 ${st.code === 0 ? '' : explain(st)}`);
  const v = parseJson<StatusView>(st);
  t.equal(v.supervisor, 'gone', 'status: supervisor gone');
  t.equal(v.state, 'failed', 'status: failed');
  t.equal(v.error?.code, 'E_DAEMON_CRASHED', 'status: E_DAEMON_CRASHED');
  t.match(v.error?.message ?? '', /sandbox down/, 'and tells how to clean up');
  const l = parseJson<(StatusView & { id: string })[]>(await cli(['sandbox', 'list', ...C, '--json']));
  t.equal(l.find((x) => x.id === id)?.supervisor, 'gone', 'list: supervisor gone');
  const ex = await cli(['exec', id, ...C, '--', 'true']);
  t.equal(ex.code, 1, 'exec into it fails');
  t.match(ex.stderr, /not running/, 'saying it is not running');

  // What the dead supervisor left is what `down` must undo from the state.
  const left = await residue(rt, { id, pod, keepState: true });
  t.ok(
    left.some((x) => /^link .*_kata/.test(x)),
    `the tap is still there before down: ${left.join('; ')}`,
  );
  t.ok(
    left.some((x) => /^ingress qdisc/.test(x)),
    'the ingress qdisc too',
  );
  t.ok(
    left.some((x) => /^mount /.test(x)),
    'and the virtio-fs mounts',
  );

  const down = await cli(['sandbox', 'down', id, ...C, '--json']);
  t.equal(down.code, 0, `down exits 0 ${down.code === 0 ? '' : explain(down)}`);
  const d = parseJson<{ state: string; via: string }>(down);
  t.equal(d.state, 'removed', 'removed');
  t.equal(d.via, 'state', 'from the persisted state');
  t.same(await residue(rt, { id, pids, pod }), [], 'no process, tap, qdisc, mount, socket or state left');
  const again = await cli(['sandbox', 'down', id, ...C, '--json']);
  t.equal(parseJson<{ state: string }>(again).state, 'absent', 'a second down is harmless');
});
