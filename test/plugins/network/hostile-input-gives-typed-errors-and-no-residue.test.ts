import t from 'tap';
import { run } from '../../../host/exec.js';
import { netnsRef } from '../../../host/netns.js';
import { attachEndpoint, createTap } from '../../../plugins/network/endpoint.js';
import { readLink } from '../../../plugins/network/link-info.js';
import type { EndpointRequest, ScannedLink } from '../../../plugins/network/types.js';
import { ipIn, listDir, makeCtx, podWithVeth, snapshot } from './endpoint-fixtures.js';

function req(link: ScannedLink, over: Partial<EndpointRequest> = {}): EndpointRequest {
  return { link, index: 0, model: 'tcfilter', queues: 1, vhost: false, ...over };
}

t.test('bad names are E_INVALID_NAME naming the name, before anything is created', async (t) => {
  const { pod } = await podWithVeth(t);
  const ctx = await makeCtx(t, pod);
  const eth0 = await readLink(ctx, 'eth0');
  const before = await snapshot(pod);
  const bad = ['a'.repeat(16), 'eth 0', 'eth0;reboot', '../x', 'eth0\nlink del lo', ''];
  for (const name of bad) {
    await t.rejects(
      attachEndpoint(ctx, req({ ...eth0, name })),
      { code: 'E_INVALID_NAME', message: name ? new RegExp(name.slice(0, 5).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : /link name/ },
      `link name ${JSON.stringify(name)}`,
    );
    await t.rejects(
      attachEndpoint(ctx, req(eth0, { tapName: name || ' ' })),
      { code: 'E_INVALID_NAME' },
      `tap name ${JSON.stringify(name)}`,
    );
    await t.rejects(createTap(ctx, { name: name || ' ', queues: 1 }), { code: 'E_INVALID_NAME' });
  }
  await t.rejects(attachEndpoint(ctx, req({ ...eth0, name: 'x'.repeat(16) }, { model: 'macvtap' })), {
    code: 'E_INVALID_NAME',
    message: /16 bytes/,
  });
  await t.rejects(attachEndpoint(ctx, req(eth0, { index: -1 })), { code: 'E_INVALID_ARGUMENT' });
  await t.rejects(attachEndpoint(ctx, req(eth0, { queues: 0 })), { code: 'E_INVALID_ARGUMENT' });
  await t.rejects(attachEndpoint(ctx, req(eth0, { model: 'bridged' as never })), { code: 'E_UNSUPPORTED', message: /bridged/ });
  await t.rejects(attachEndpoint(ctx, req(eth0, { uid: -3 })), { code: 'E_INVALID_ARGUMENT' });
  t.same(await snapshot(pod), before, 'nothing created');
  t.same(await listDir(ctx.runDir), []);
});

t.test('a missing namespace is E_NETNS_NOT_FOUND naming it', async (t) => {
  const { pod } = await podWithVeth(t);
  const eth0 = await readLink(await makeCtx(t, pod), 'eth0');
  for (const kind of ['spawn', 'coprocess'] as const) {
    const ctx = await makeCtx(t, netnsRef('krt-no-such-ns'), { kind });
    for (const model of ['tcfilter', 'macvtap'] as const) {
      await t.rejects(
        attachEndpoint(ctx, req(eth0, { model })),
        { code: 'E_NETNS_NOT_FOUND', message: /krt-no-such-ns/ },
        `${kind}/${model}`,
      );
    }
    await t.rejects(createTap(ctx, { name: 'tap0_kata', queues: 1 }), { code: 'E_NETNS_NOT_FOUND', message: /krt-no-such-ns/ });
    t.same(await listDir(ctx.runDir), []);
  }
});

const kataLeft = async (ns: Parameters<typeof ipIn>[0]): Promise<string[]> =>
  JSON.parse(await ipIn(ns, '-j', 'link', 'show'))
    .map((l: { ifname: string }) => l.ifname)
    .filter((n: string) => n.endsWith('_kata') || n.startsWith('kr-tmp'));
const ingressLeft = async (ns: Parameters<typeof ipIn>[0]): Promise<boolean> =>
  (await run('tc', ['-n', ns.name!, '-j', 'qdisc', 'show'])).stdout.includes('"ingress"');

for (const model of ['tcfilter', 'macvtap'] as const) {
  t.test(`${model}: a link deleted between scan and attach gives E_LINK_NOT_FOUND naming it; nothing left`, async (t) => {
    const { pod } = await podWithVeth(t);
    const ctx = await makeCtx(t, pod);
    const eth0 = await readLink(ctx, 'eth0');
    await ipIn(pod, 'link', 'del', 'eth0');
    await t.rejects(attachEndpoint(ctx, req(eth0, { model })), { code: 'E_LINK_NOT_FOUND', message: new RegExp(`eth0.*${pod.name}`) });
    t.same(await kataLeft(pod), []);
    t.equal(await ingressLeft(pod), false);
    t.same(await listDir(ctx.runDir), []);
  });
}

const midSteps: [string, 'tcfilter' | 'macvtap'][] = [
  ['tcfilter:redirect', 'tcfilter'],
  ['endpoint:complete', 'tcfilter'],
  ['macvtap:create', 'macvtap'],
  ['macvtap:read-dev-number', 'macvtap'],
  ['macvtap:mknod', 'macvtap'],
];
for (const [step, model] of midSteps) {
  t.test(`${model}: the link vanishes at ${step}: typed error or clean result, nothing left`, async (t) => {
    const { pod } = await podWithVeth(t);
    const ctx = await makeCtx(t, pod, {
      faults: async (s) => {
        if (s === step) await ipIn(pod, 'link', 'del', 'eth0');
      },
    });
    const eth0 = await readLink(ctx, 'eth0');
    let err: unknown;
    try {
      const a = await attachEndpoint(ctx, req(eth0, { model }));
      // A vanish after the last kernel step cannot be seen by attach; detach must still clean up.
      const { detachEndpoint } = await import('../../../plugins/network/endpoint.js');
      await detachEndpoint(ctx, a);
    } catch (e) {
      err = e;
    }
    if (step !== 'endpoint:complete' && step !== 'macvtap:mknod') {
      t.match(
        err,
        { code: 'E_LINK_NOT_FOUND', message: /(eth0|tap0_kata).* does not exist in network namespace/ },
        'typed error naming the link and namespace',
      );
    } else if (err) {
      t.match(err, { code: /^E_/ });
    }
    t.same(await kataLeft(pod), [], 'no tap, macvtap or scratch device left');
    t.equal(await ingressLeft(pod), false, 'no qdisc left');
    t.same(await listDir(ctx.runDir), [], 'no device node left');
  });
}
