/**
 * A daemon of a running sandbox dies (SIGKILL by its pid from `sandbox status --json`): QEMU, or
 * virtiofsd (as Kata does, the VM is stopped then: the guest's share would hang). The supervisor
 * reports the sandbox failed and cleans everything itself; `down` then clears the record. One TCG
 * boot per case, through the real CLI.
 */
import t, { type Test } from 'tap';
import {
  cli,
  parseJson,
  podNetwork,
  residue,
  tempRuntime,
  viewPids,
  waitFor,
  type Runtime,
  explain,
  type StatusView,
} from '../../helpers/sandbox.js';

async function killDaemon(t: Test, rt: Runtime, role: 'qemu' | 'virtiofsd', n: number, expect: RegExp): Promise<void> {
  const net = await podNetwork(t, { mtu: 1400 });
  const id = `krt-kill${n}-${process.pid}`;
  const C = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, '--netns', net.pod.name!, ...C, '--json'], { timeoutMs: 240_000 });
  if (up.code !== 0) {
    t.fail(`up failed: ${explain(up)}`);
    return;
  }
  const st0 = parseJson<StatusView>(await cli(['sandbox', 'status', id, ...C, '--json']));
  t.equal(st0.state, 'running', 'running before the kill');
  const pid = st0.pids[role];
  t.ok(pid, `status gives the ${role} pid (${pid})`);
  const pids = viewPids(st0);
  const pod = { ns: net.pod, dev: net.ifname };
  t.not((await residue(rt, { id, pids, pod })).length, 0, 'the residue check sees the running sandbox');
  if (!pid) return;

  process.kill(pid, 'SIGKILL');
  let last: StatusView | undefined;
  try {
    await waitFor(
      async () => {
        const r = await cli(['sandbox', 'status', id, ...C, '--json']);
        if (r.code !== 0) return false;
        last = parseJson<StatusView>(r);
        return last.state === 'failed';
      },
      90_000,
      300,
    );
  } catch {
    /* asserted below */
  }
  t.equal(last?.state, 'failed', `status reports failed (last: ${JSON.stringify(last)})`);
  t.equal(last?.error?.code, 'E_DAEMON_CRASHED', 'with E_DAEMON_CRASHED');
  t.match(last?.error?.message ?? '', expect, `naming what died: ${last?.error?.message}`);

  // The supervisor cleans up before it marks the sandbox failed, then exits: allow it a bounded time to go.
  await waitFor(async () => (await residue(rt, { id, pids, pod, keepState: true })).length === 0, 30_000, 200).catch(() => {});
  t.same(
    await residue(rt, { id, pids, pod, keepState: true }),
    [],
    'no process, mount, socket, shared dir, tap or qdisc left; only the failed record',
  );
  const st = parseJson<StatusView>(await cli(['sandbox', 'status', id, ...C, '--json']));
  t.equal(st.supervisor, 'gone', 'the supervisor has exited');
  t.same(st.pids, {}, 'no process is recorded');

  const down = await cli(['sandbox', 'down', id, ...C, '--json']);
  t.equal(down.code, 0, `down exits 0 ${down.code === 0 ? '' : explain(down)}`);
  t.equal(parseJson<{ state: string }>(down).state, 'removed', 'down clears the failed record');
  t.same(await residue(rt, { id, pids, pod }), [], 'nothing at all is left');
}

t.test('QEMU killed: the sandbox is reported failed and everything is cleaned', async (t) => {
  await killDaemon(t, tempRuntime(t), 'qemu', 1, /QEMU/);
});

t.test('virtiofsd killed: the VM is stopped, the sandbox is reported failed and everything is cleaned', async (t) => {
  // Whichever the supervisor notices first (virtiofsd's exit, or QEMU's reaction to losing its backend), the cause is a daemon crash.
  await killDaemon(t, tempRuntime(t), 'virtiofsd', 2, /virtiofsd|QEMU/);
});
