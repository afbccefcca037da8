/**
 * With kata-cni in the CNI chain, the pod's namespace already holds a tap joined to eth0 by a
 * redirect each way when the sandbox scans it. The scan recognises that from the kernel alone, the
 * attach hands that tap to the VM and changes nothing on the host, and the detach leaves the tap to
 * kata-cni's DEL. A tap redirected one way only, or to another link, is not claimed.
 */
import t from 'tap';
import { run } from '../../../host/exec.js';
import { attachEndpoint, checkEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import { REDIRECT_FILTER_PREF } from '../../../plugins/network/names.js';
import { endpointPlugin } from '../../../plugins/network/plugin.js';
import { scanNetns } from '../../../plugins/network/scan.js';
import { makeCtx, podWithVeth, snapshot } from './endpoint-fixtures.js';

t.test('a tap joined both ways by kata-cni is found, used as the device, and left in place', async (t) => {
  const { pod } = await podWithVeth(t, { mtu: 1450 });
  const ctx = await makeCtx(t, pod);
  // What kata-cni's ADD does (it runs this same endpoint code): a 2-queue tap0_kata + both redirects.
  const first = (await scanNetns(ctx)).endpoints[0]!;
  t.notOk(first.preattached, 'a plain veth has no preattached tap');
  await attachEndpoint(ctx, { link: first.link, index: 0, model: 'tcfilter', queues: 2, vhost: false });

  const scan = await scanNetns(ctx);
  t.same(
    scan.endpoints.map((e) => e.link.name),
    ['eth0'],
    'the tap itself is not an endpoint',
  );
  const e = scan.endpoints[0]!;
  t.same(e.preattached, { tap: 'tap0_kata', mtu: 1450, multiQueue: true }, 'eth0 is marked with the tap kata-cni made');

  const before = await snapshot(pod);
  const a = await attachEndpoint(ctx, { link: e.link, index: 0, model: 'tcfilter', queues: 4, vhost: true, preattached: e.preattached! });
  t.same(
    a.devices,
    [{ kind: 'net-tap', id: 'net0', ifname: 'tap0_kata', mac: e.link.mac, mtu: 1450, queues: 4, vhost: true }],
    "the VM gets kata-cni's tap with the link's MAC (multi-queue: the configured queues)",
  );
  t.match(a.guest.interfaces?.[0], { name: 'eth0', hwAddr: e.link.mac, mtu: 1450, type: 'virtual' });
  t.equal(a.resources.preattachedTap, 'tap0_kata');
  t.notOk(a.resources.tap, 'no tap recorded as ours');
  t.same(await snapshot(pod), before, 'nothing on the host changed');
  t.same(await checkEndpoint(ctx, a), [], 'check: healthy');

  await detachEndpoint(ctx, a);
  await endpointPlugin.sweep!(ctx, {
    from: 'link',
    link: e.link,
    index: 0,
    model: 'tcfilter',
    queues: 4,
    vhost: true,
    preattached: e.preattached!,
  });
  t.same(await snapshot(pod), before, "detach and the sweep of an interrupted attach leave kata-cni's tap and filters alone");
  t.match(await checkEndpoint(ctx, a), [], 'still healthy');
});

t.test('a tap redirected one way only, or to another link, is not claimed', async (t) => {
  const { pod } = await podWithVeth(t);
  const ctx = await makeCtx(t, pod);
  const link = (await scanNetns(ctx)).endpoints[0]!.link;
  await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false });
  // Only the tap -> eth0 direction remains.
  await run('tc', ['-n', pod.name!, 'filter', 'del', 'dev', 'eth0', 'parent', 'ffff:', 'pref', String(REDIRECT_FILTER_PREF)]);
  t.notOk((await scanNetns(ctx)).endpoints[0]!.preattached, 'one direction is not a join');

  // Two taps joined to each other (neither is an endpoint: no address) say nothing about eth0.
  await run('ip', ['-n', pod.name!, 'tuntap', 'add', 'tapx', 'mode', 'tap']);
  await run('ip', ['-n', pod.name!, 'tuntap', 'add', 'tapy', 'mode', 'tap']);
  for (const [from, to] of [
    ['tapx', 'tapy'],
    ['tapy', 'tapx'],
  ] as const) {
    await run('tc', ['-n', pod.name!, 'qdisc', 'add', 'dev', from, 'ingress']).catch(() => {});
    await run('tc', [
      '-n',
      pod.name!,
      'filter',
      'add',
      'dev',
      from,
      'parent',
      'ffff:',
      'protocol',
      'all',
      'u32',
      'match',
      'u8',
      '0',
      '0',
      'action',
      'mirred',
      'egress',
      'redirect',
      'dev',
      to,
    ]);
  }
  const scan = await scanNetns(ctx);
  t.same(
    scan.endpoints.map((x) => [x.link.name, x.preattached?.tap]),
    [['eth0', undefined]],
    'nothing is preattached to eth0',
  );
});
