import t from 'tap';
import { run } from '../../../host/exec.js';
import { deleteNetns } from '../../../host/netns.js';
import { attachEndpoint, checkEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import { readLink } from '../../../plugins/network/link-info.js';
import {
  FAILING_LINE,
  RewritingNetlink,
  listDir,
  makeCtx,
  makeNetlink,
  podWithVeth,
  snapshot,
  type NetlinkKind,
} from './endpoint-fixtures.js';

t.test('detach removes tap, qdiscs and filters from a namespace the caller owns (kata-containers#6339)', async (t) => {
  // The namespace and its veth belong to the caller (a CNI plugin); only the endpoint is ours.
  const { pod } = await podWithVeth(t);
  const ctx = await makeCtx(t, pod);
  const before = await snapshot(pod);
  const a = await attachEndpoint(ctx, { link: await readLink(ctx, 'eth0'), index: 0, model: 'tcfilter', queues: 1, vhost: false });
  t.not(JSON.stringify(await snapshot(pod)), JSON.stringify(before));
  await detachEndpoint(ctx, a);
  t.same(await snapshot(pod), before, 'the namespace lives on, without tap0_kata, qdiscs or filters');
});

for (const kind of ['spawn', 'coprocess'] as NetlinkKind[]) {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    t.test(`${kind}/${model}: double detach is harmless; detach after the namespace is gone is harmless`, async (t) => {
      const { pod } = await podWithVeth(t);
      const ctx = await makeCtx(t, pod, { kind });
      const before = await snapshot(pod);
      const a = await attachEndpoint(ctx, { link: await readLink(ctx, 'eth0'), index: 0, model, queues: 1, vhost: false });
      await detachEndpoint(ctx, a);
      await detachEndpoint(ctx, a);
      t.same(await snapshot(pod), before, 'twice detached, namespace as before');

      const b = await attachEndpoint(ctx, { link: await readLink(ctx, 'eth0'), index: 1, model, queues: 1, vhost: false });
      await ctx.netlink.release(pod);
      await deleteNetns(pod);
      await detachEndpoint(ctx, b);
      await detachEndpoint(ctx, b);
      t.same(await listDir(ctx.runDir), [], 'the private device node (macvtap) is removed even so');
      t.match(await checkEndpoint(ctx, b), [/does not exist/], 'check reports the missing namespace');
    });
  }
}

t.test('tcfilter: EBUSY on the ingress qdisc is retried by re-running the failed lines', async (t) => {
  const { pod } = await podWithVeth(t);
  const nl = new RewritingNetlink(makeNetlink(t, 'spawn'));
  let busy = 2;
  nl.rewrite = (tool, line) =>
    tool === 'tc' && line === 'qdisc add dev eth0 ingress' && busy-- > 0
      ? { line: FAILING_LINE.tc, message: 'Error: Device or resource busy' }
      : undefined;
  const ctx = await makeCtx(t, pod, { netlink: nl });
  const a = await attachEndpoint(ctx, { link: await readLink(ctx, 'eth0'), index: 0, model: 'tcfilter', queues: 1, vhost: false });
  const tcCalls = nl.calls.filter((c) => c.tool === 'tc');
  t.equal(tcCalls.length, 3, 'one batch and two retries');
  t.same(
    tcCalls[1]!.lines,
    ['qdisc add dev eth0 ingress', tcCalls[0]!.lines[2]],
    'a retry re-runs only the failed lines (the qdisc and the filter that needed it)',
  );
  t.same(await checkEndpoint(ctx, a), []);
  await detachEndpoint(ctx, a);
});

t.test('tcfilter: EBUSY that persists gives E_BUSY after 5 attempts and leaves nothing', async (t) => {
  const { pod } = await podWithVeth(t);
  const before = await snapshot(pod);
  const nl = new RewritingNetlink(makeNetlink(t, 'spawn'));
  nl.rewrite = (tool, line) =>
    tool === 'tc' && line === 'qdisc add dev eth0 ingress'
      ? { line: FAILING_LINE.tc, message: 'Error: Device or resource busy' }
      : undefined;
  const ctx = await makeCtx(t, pod, { netlink: nl });
  await t.rejects(attachEndpoint(ctx, { link: await readLink(ctx, 'eth0'), index: 0, model: 'tcfilter', queues: 1, vhost: false }), {
    code: 'E_BUSY',
    message: /eth0/,
  });
  t.equal(nl.calls.filter((c) => c.tool === 'tc' && c.lines.includes('qdisc add dev eth0 ingress')).length, 5, '5 attempts');
  t.same(await snapshot(pod), before);
});

t.test('tcfilter: a foreign ingress qdisc on the link is E_LINK_EXISTS; the foreign qdisc and filter stay, ours go', async (t) => {
  const { pod } = await podWithVeth(t);
  await run('tc', ['-n', pod.name!, 'qdisc', 'add', 'dev', 'eth0', 'ingress']);
  await run('tc', [
    '-n',
    pod.name!,
    'filter',
    'add',
    'dev',
    'eth0',
    'parent',
    'ffff:',
    'protocol',
    'ip',
    'pref',
    '100',
    'u32',
    'match',
    'ip',
    'dst',
    '192.0.2.1/32',
    'action',
    'mirred',
    'egress',
    'redirect',
    'dev',
    'lo',
  ]);
  const before = await snapshot(pod);
  const ctx = await makeCtx(t, pod);
  await t.rejects(attachEndpoint(ctx, { link: await readLink(ctx, 'eth0'), index: 0, model: 'tcfilter', queues: 1, vhost: false }), {
    code: 'E_LINK_EXISTS',
    message: /eth0 .*already has an ingress qdisc/,
  });
  t.same(await snapshot(pod), before, 'foreign qdisc and filter untouched, our filter and tap removed');
});
