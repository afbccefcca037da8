/**
 * Fault injection through the real CLI: KATA_RESOURCES_FAULT=<checkpoint> makes the supervisor's
 * `up` fail at that named step. For each case: `up` exits 1 naming the step, `sandbox status`
 * reports the sandbox failed, nothing of it is left (processes, mounts, sockets, its shared tree, a
 * namespace it created; tap and qdiscs in a caller-owned namespace), and `down` clears the failed
 * record.
 *
 * Covered: every step before the guest boots (netns, scan, endpoint, virtiofs, guest-kit, vm), plus
 * "agent" (QEMU is running, the guest has not booted yet) and plugin checkpoints inside the endpoint
 * attach (tap made, redirect not yet; endpoint complete) and the virtio-fs attach (daemon running).
 * After the boot each step costs a full TCG boot; all run by default, and KRT_QUICK_FAULT_STEPS=1
 * keeps only "interfaces" (the first) and "storages" (the last).
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { STEPS } from '../../../runtime-core/sandbox/assemble.js';
import { cli, parseJson, podNetwork, residue, tempRuntime, type PodNetwork, type Runtime, explain } from '../../helpers/sandbox.js';
import type { Test } from 'tap';

interface Case {
  /** Checkpoint name as KATA_RESOURCES_FAULT takes it. */
  fault: string;
  /** true: the sandbox creates kr-<id>; false: a caller-owned pod namespace with a veth. */
  createdNetns: boolean;
  /** Needs a full guest boot. */
  boot?: boolean;
}

// Every step, also after the boot (a TCG boot each, about 15 s); KRT_QUICK_FAULT_STEPS=1 keeps
// only the first and the last of those, for quick local runs.
const all = process.env.KRT_QUICK_FAULT_STEPS !== '1';
const CASES: Case[] = [
  { fault: 'sandbox.netns', createdNetns: true },
  { fault: 'sandbox.scan', createdNetns: true },
  { fault: 'sandbox.vm', createdNetns: true },
  { fault: 'sandbox.scan', createdNetns: false },
  { fault: 'sandbox.endpoint', createdNetns: false },
  { fault: 'tcfilter:redirect', createdNetns: false },
  { fault: 'endpoint:complete', createdNetns: false },
  { fault: 'sandbox.virtiofs', createdNetns: false },
  { fault: 'virtiofs.ready', createdNetns: false },
  { fault: 'sandbox.guest-kit', createdNetns: false },
  { fault: 'sandbox.vm', createdNetns: false },
  { fault: 'sandbox.agent', createdNetns: false },
  { fault: 'sandbox.interfaces', createdNetns: false, boot: true },
  ...(all
    ? [
        { fault: 'sandbox.routes', createdNetns: false, boot: true },
        { fault: 'sandbox.neighbours', createdNetns: false, boot: true },
      ]
    : []),
  { fault: 'sandbox.storages', createdNetns: false, boot: true },
];

t.test('the cases name every step of up that has no full boot, and steps after it', async (t) => {
  const named = new Set(CASES.map((c) => c.fault.replace(/^sandbox\./, '')));
  const before = STEPS.slice(0, STEPS.indexOf('agent') + 1);
  for (const s of before) t.ok(named.has(s), `step ${s} is covered`);
  t.ok(named.has('interfaces') && named.has('storages'), 'the first and the last step after the boot are covered');
  const skipped = STEPS.filter((s) => !named.has(s));
  if (skipped.length) t.comment(`not run (KRT_QUICK_FAULT_STEPS=1): ${skipped.join(', ')}`);
});

async function runCase(t: Test, rt: Runtime, c: Case, n: number): Promise<void> {
  const id = `krt-f${n}-${process.pid}`;
  const C = ['--config', rt.config];
  let net: PodNetwork | undefined;
  if (!c.createdNetns) net = await podNetwork(t, { mtu: 1400 });
  const up = await cli(['sandbox', 'up', '--id', id, ...(net ? ['--netns', net.pod.name!] : []), ...C, '--json'], {
    env: { KATA_RESOURCES_FAULT: c.fault },
    timeoutMs: 240_000,
  });
  t.equal(up.code, 1, `up exits 1 ${up.code === 1 ? '' : explain(up)}`);
  t.match(up.stderr, `fault injected at step ${c.fault}`, 'stderr names the step that failed');
  const err = parseJson<{ error?: { code: string; message: string } }>(up).error;
  t.equal(err?.code, 'E_INTERNAL', '--json prints the error object');

  const st = await cli(['sandbox', 'status', id, ...C, '--json']);
  if (st.code === 0) {
    const v = parseJson<{ state: string; supervisor: string; error?: { message: string }; pids: Record<string, number> }>(st);
    t.equal(v.state, 'failed', 'status reports failed');
    t.equal(v.supervisor, 'gone', 'its supervisor has exited');
    t.match(v.error?.message ?? '', c.fault, 'with the error that failed it');
    t.same(v.pids, {}, 'no process is recorded any more');
  } else {
    t.match(st.stdout, /E_SANDBOX_NOT_FOUND/, 'or the sandbox is gone');
  }

  const pod = net ? { pod: { ns: net.pod, dev: net.ifname } } : {};
  t.same(await residue(rt, { id, keepState: true, ...pod }), [], 'nothing is left but the failed record');
  if (c.createdNetns) t.notOk(existsSync(`/run/netns/kr-${id}`), `the namespace kr-${id} the sandbox made is deleted`);
  if (net) t.ok(existsSync(net.pod.path), 'the caller-owned namespace is kept');

  const down = await cli(['sandbox', 'down', id, ...C, '--json']);
  t.equal(down.code, 0, `down exits 0 ${down.code === 0 ? '' : explain(down)}`);
  t.equal(parseJson<{ state: string }>(down).state, 'removed', 'down removes the failed record');
  t.same(await residue(rt, { id, ...pod }), [], 'after down nothing at all is left');
  const l = parseJson<{ id: string }[]>(await cli(['sandbox', 'list', ...C, '--json']));
  t.notOk(
    l.some((x) => x.id === id),
    'list no longer shows it',
  );
}

t.test('a fault at each step: up fails, status says failed, nothing is left, down clears the record', async (t) => {
  const rt = tempRuntime(t);
  for (const [i, c] of CASES.entries()) {
    await t.test(
      `${c.fault} (${c.createdNetns ? 'namespace made by the sandbox' : 'caller-owned pod namespace with a veth'}${c.boot ? ', after a full boot' : ''})`,
      (t) => runCase(t, rt, c, i),
    );
  }
});
