import t from 'tap';
import { spawnCount } from '../../../host/exec.js';
import { CoprocessNetlink } from '../../../host/netlink.js';
import { REDIRECT_FILTER_PREF } from '../../../plugins/network/names.js';
import { attachEndpoint, checkEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import { readLink } from '../../../plugins/network/link-info.js';
import { links, tcJson } from '../../helpers/netns.js';
import { ipIn, makeCtx, podWithVeth, snapshot, type NetlinkKind } from './endpoint-fixtures.js';

for (const kind of ['spawn', 'coprocess'] as NetlinkKind[]) {
  t.test(`${kind}: veth + tcfilter builds tap, qdiscs and both redirects, and detach removes them`, async (t) => {
    const { pod } = await podWithVeth(t, { mtu: 1400 });
    const ctx = await makeCtx(t, pod, { kind });
    const link = await readLink(ctx, 'eth0');
    const before = await snapshot(pod);
    const spawns0 = spawnCount();
    const a = await attachEndpoint(ctx, { link, index: 3, model: 'tcfilter', queues: 1, vhost: true });
    if (kind === 'spawn') t.equal(spawnCount() - spawns0, 2, 'a fresh process attaches in exactly 2 spawns (one ip batch, one tc batch)');

    t.same(a.devices, [{ kind: 'net-tap', id: 'net3', ifname: 'tap3_kata', mac: link.mac, mtu: 1400, queues: 1, vhost: true }]);
    const gi = a.guest.interfaces ?? [];
    t.equal(gi.length, 1);
    t.match(gi[0], { device: 'eth0', name: 'eth0', mtu: 1400, hwAddr: link.mac, devicePath: '', type: 'virtual', raw_flags: 0 });
    t.same(gi[0]?.IPAddresses, link.addresses, 'the guest gets the link addresses (IPv4 and the IPv6 link-local)');
    t.ok(gi[0]?.IPAddresses.some((x) => x.family === 0 && x.address === '10.77.0.2' && x.mask === '24'));
    t.equal(a.resources.tap, 'tap3_kata');
    t.same(a.resources.ingress.sort(), ['eth0', 'tap3_kata']);

    const ls = await links(pod);
    const tap = ls.find((l) => l.ifname === 'tap3_kata');
    t.ok(tap, 'tap exists');
    t.equal(tap?.linkinfo?.info_kind, 'tun');
    t.equal(tap?.linkinfo?.info_data?.type, 'tap');
    t.equal(tap?.linkinfo?.info_data?.vnet_hdr, true, 'vnet_hdr');
    t.equal(tap?.linkinfo?.info_data?.multi_queue, false, 'single queue');
    t.equal(tap?.linkinfo?.info_data?.pi, false, 'no packet info header');
    t.equal(tap?.mtu, 1400, 'tap MTU = veth MTU');
    t.ok(tap?.flags.includes('UP'), 'tap up');
    const eth0 = ls.find((l) => l.ifname === 'eth0');
    t.equal(eth0?.address, link.mac, 'the veth keeps its MAC');
    t.match(await ipIn(pod, 'addr', 'show', 'dev', 'eth0'), /10\.77\.0\.2\/24/, 'the veth keeps its address');
    t.notOk(
      ls.some((l) => l.ifname.startsWith('kr-tmp')),
      'no scratch name left',
    );

    const qd = await tcJson(pod, ['qdisc', 'show']);
    for (const dev of ['eth0', 'tap3_kata'])
      t.ok(
        qd.some((q) => q.dev === dev && q.kind === 'ingress' && q.handle === 'ffff:'),
        `ingress qdisc on ${dev}`,
      );
    for (const [dev, to] of [
      ['eth0', 'tap3_kata'],
      ['tap3_kata', 'eth0'],
    ]) {
      const f = (await tcJson(pod, ['filter', 'show', 'dev', dev!, 'parent', 'ffff:'])) as {
        kind?: string;
        pref?: number;
        protocol?: string;
        options?: {
          match?: { value: string; mask: string };
          actions?: { kind: string; mirred_action: string; direction: string; to_dev: string; control_action?: { type: string } }[];
        };
      }[];
      const full = f.find((x) => x.options?.actions);
      t.equal(full?.kind, 'u32', `${dev}: u32 filter`);
      t.equal(full?.protocol, 'all');
      t.equal(full?.pref, REDIRECT_FILTER_PREF);
      t.same(full?.options?.match, { value: '0', mask: '0', offmask: '', off: 0 }, 'match u8 0 0');
      t.match(
        full?.options?.actions?.[0],
        { kind: 'mirred', mirred_action: 'redirect', direction: 'egress', to_dev: to, control_action: { type: 'stolen' } },
        `${dev} -> ${to}`,
      );
    }

    t.same(await checkEndpoint(ctx, a), [], 'check: healthy');

    await detachEndpoint(ctx, a);
    t.same(await snapshot(pod), before, 'detach restores the namespace exactly');
    t.not((await checkEndpoint(ctx, a)).length, 0, 'check after detach reports the missing tap');
  });
}

t.test('coprocess: a second attach in the same namespace costs no new process', async (t) => {
  const { pod } = await podWithVeth(t);
  // A long idle timeout: under load a slow `link del` could outlast a short one and the helper would be respawned.
  const nl = new CoprocessNetlink(60_000);
  t.teardown(() => nl.close());
  const ctx = await makeCtx(t, pod, { netlink: nl });
  const link = await readLink(ctx, 'eth0');
  const a = await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false });
  await detachEndpoint(ctx, a);
  const s0 = spawnCount();
  const b = await attachEndpoint(ctx, { link, index: 1, model: 'tcfilter', queues: 1, vhost: false });
  t.equal(spawnCount() - s0, 0, 'ip and tc coprocesses reused');
  t.same(await checkEndpoint(ctx, b), []);
  await detachEndpoint(ctx, b);
  await ctx.netlink.release(pod);
});

t.test('multi-queue tap with owner: multi_queue flag, user and group', async (t) => {
  const { pod } = await podWithVeth(t);
  const ctx = await makeCtx(t, pod);
  const link = await readLink(ctx, 'eth0');
  const a = await attachEndpoint(ctx, {
    link,
    index: 0,
    model: 'tcfilter',
    queues: 4,
    vhost: true,
    uid: 1234,
    gid: 4321,
    tapName: 'vm0tap',
  });
  const tap = (await links(pod)).find((l) => l.ifname === 'vm0tap');
  t.equal(tap?.linkinfo?.info_data?.multi_queue, true);
  t.equal(tap?.linkinfo?.info_data?.user, 1234);
  t.equal(tap?.linkinfo?.info_data?.group, 4321);
  t.equal((a.devices[0] as { queues: number }).queues, 4);
  t.same(await checkEndpoint(ctx, a), []);
  await detachEndpoint(ctx, a);
  t.notOk((await links(pod)).some((l) => l.ifname === 'vm0tap'));
});

t.test('check reports a broken endpoint: wrong MTU, changed MAC, missing qdisc, wrong redirect target', async (t) => {
  const { pod } = await podWithVeth(t);
  const ctx = await makeCtx(t, pod);
  const link = await readLink(ctx, 'eth0');
  const a = await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false });
  await ipIn(pod, 'link', 'set', 'dev', 'tap0_kata', 'mtu', '1300');
  t.match(await checkEndpoint(ctx, a), [/MTU mismatch/]);
  await ipIn(pod, 'link', 'set', 'dev', 'tap0_kata', 'mtu', '1500');
  await ipIn(pod, 'link', 'set', 'dev', 'eth0', 'address', '02:11:22:33:44:55');
  t.match(await checkEndpoint(ctx, a), [/MAC mismatch/]);
  await ipIn(pod, 'link', 'set', 'dev', 'eth0', 'address', link.mac);
  await ipIn(pod, 'tuntap', 'add', 'dev', 'other0', 'mode', 'tap');
  const { run } = await import('../../../host/exec.js');
  await run('tc', [
    '-n',
    pod.name!,
    'filter',
    'replace',
    'dev',
    'tap0_kata',
    'parent',
    'ffff:',
    'protocol',
    'all',
    'pref',
    String(REDIRECT_FILTER_PREF),
    'handle',
    '800::800',
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
    'other0',
  ]);
  t.match(await checkEndpoint(ctx, a), [/redirect filter on tap0_kata points to other0 instead of eth0/]);
  await run('tc', ['-n', pod.name!, 'qdisc', 'del', 'dev', 'eth0', 'ingress']);
  const p = await checkEndpoint(ctx, a);
  t.ok(
    p.some((x) => /ingress qdisc on eth0 is missing/.test(x)),
    'missing ingress qdisc on the veth',
  );
  t.ok(
    p.some((x) => /redirect filter eth0 -> tap0_kata is missing/.test(x)),
    'missing redirect on the veth',
  );
  await detachEndpoint(ctx, a);
});
