/**
 * Redteam D7: the supervisor crashing between making a resource and journalling it leaked the
 * resource while `down` said "removed". Every resource's intent is journalled before it is made, so
 * here the supervisor SIGKILLs itself (KATA_RESOURCES_KILL_AT) at each step of `up` and inside the
 * plugins' attaches (a tap made but not recorded, a shared tree mounted before its daemon, QEMU just
 * spawned), and `sandbox down` must then leave nothing: no tap, qdisc or redirect in the caller's
 * namespace, no namespace of ours, no mount, no process, no state. And `down` is honest: while
 * something it cannot remove remains (a mount under the sandbox directory), it fails naming it and
 * keeps the record, and succeeds once that is gone.
 */
import t from 'tap';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { cli, explain, parseJson, podNetwork, residue, tempRuntime, type PodNetwork, type Runtime } from '../../helpers/sandbox.js';
import type { Test } from 'tap';

interface Case {
  step: string;
  createdNetns: boolean;
  /** Needs a full guest boot. */
  boot?: boolean;
}

const CASES: Case[] = [
  { step: 'sandbox.netns', createdNetns: true },
  { step: 'sandbox.scan', createdNetns: true },
  { step: 'sandbox.scan', createdNetns: false },
  { step: 'tcfilter:redirect', createdNetns: false },
  { step: 'endpoint:complete', createdNetns: false },
  { step: 'virtiofs.daemon', createdNetns: false },
  { step: 'virtiofs.ready', createdNetns: false },
  { step: 'sandbox.vm', createdNetns: false },
  { step: 'start:spawned', createdNetns: false },
  { step: 'sandbox.agent', createdNetns: true },
  { step: 'sandbox.interfaces', createdNetns: false, boot: true },
  { step: 'sandbox.storages', createdNetns: false, boot: true },
];

async function runCase(t: Test, rt: Runtime, c: Case, n: number): Promise<void> {
  const id = `krt-k${n}-${process.pid}`;
  const C = ['--config', rt.config];
  let net: PodNetwork | undefined;
  if (!c.createdNetns) net = await podNetwork(t, { mtu: 1400 });
  const up = await cli(['sandbox', 'up', '--id', id, ...(net ? ['--netns', net.pod.name!] : []), ...C, '--json'], {
    env: { KATA_RESOURCES_KILL_AT: c.step },
    timeoutMs: 240_000,
  });
  t.equal(up.code, 1, `up fails when its supervisor dies ${up.code === 1 ? '' : explain(up)}`);
  t.match(up.stderr, /E_DAEMON_START: the supervisor of sandbox .* exited/, 'and says the supervisor exited');

  const pod = net ? { pod: { ns: net.pod, dev: net.ifname } } : {};
  const down = await cli(['sandbox', 'down', id, ...C, '--json']);
  t.equal(down.code, 0, `down exits 0 ${down.code === 0 ? '' : explain(down)}`);
  t.same(await residue(rt, { id, ...pod }), [], 'after down nothing at all is left');
  if (net) t.ok(existsSync(net.pod.path), 'the caller-owned namespace is kept');
}

t.test('the supervisor killed at each step of up: down leaves nothing', async (t) => {
  const rt = tempRuntime(t);
  for (const [i, c] of CASES.entries()) {
    await t.test(
      `killed at ${c.step} (${c.createdNetns ? 'namespace made by the sandbox' : 'caller-owned pod namespace'}${c.boot ? ', after a boot' : ''})`,
      (t) => runCase(t, rt, c, i),
    );
  }
});

t.test('down is honest: what it cannot remove is named, the record kept, and a second down finishes', async (t) => {
  const rt = tempRuntime(t);
  const net = await podNetwork(t);
  const id = `krt-kh-${process.pid}`;
  const C = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, '--netns', net.pod.name!, ...C], { env: { KATA_RESOURCES_KILL_AT: 'sandbox.vm' } });
  t.equal(up.code, 1);
  // Something of the host's that down must not force away: a mount below the sandbox directory.
  const mnt = join(rt.stateDir, 'sandboxes', id, 'held');
  mkdirSync(mnt);
  await run('mount', ['-t', 'tmpfs', 'krt-held', mnt]);
  t.teardown(() => run('umount', [mnt], { reject: false }));
  const d1 = await cli(['sandbox', 'down', id, ...C]);
  t.equal(d1.code, 1, 'down fails');
  t.match(d1.stderr, /E_STATE: sandbox .*: .*held still mounted/, 'naming what is left');
  t.ok(existsSync(join(rt.stateDir, 'sandboxes', id, 'state.json')), 'the record is kept');
  t.equal(
    parseJson<{ id: string }[]>(await cli(['sandbox', 'list', ...C, '--json'])).filter((x) => x.id === id).length,
    1,
    'list still shows it',
  );
  await run('umount', [mnt]);
  const d2 = await cli(['sandbox', 'down', id, ...C]);
  t.equal(d2.code, 0, `the second down finishes ${d2.code === 0 ? '' : explain(d2)}`);
  t.same(await residue(rt, { id, pod: { ns: net.pod, dev: net.ifname } }), []);
});
