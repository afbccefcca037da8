import t from 'tap';
import { open, stat } from 'node:fs/promises';
import { run } from '../../../host/exec.js';
import type { NetnsRef } from '../../../host/netns.js';
import { attachEndpoint, checkEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import { readLink } from '../../../plugins/network/link-info.js';
import { splitDevNumber } from '../../../plugins/network/models/macvtap.js';
import { links, tempNetns } from '../../helpers/netns.js';
import { waitLinkLocal, ipBatch, ipIn, listDir, makeCtx, podWithVeth, snapshot, type NetlinkKind } from './endpoint-fixtures.js';

/** A pod whose eth0 is a macvlan on a lower device in a "host" test namespace. */
async function podWithMacvlan(t: Parameters<typeof tempNetns>[0]): Promise<{ pod: NetnsRef; host: NetnsRef }> {
  const host = await tempNetns(t, 'host');
  const pod = await tempNetns(t, 'pod');
  await ipBatch(host, [
    'link add low0 type veth peer name low1',
    'link set low0 up',
    'link set low1 up',
    `link add link low0 name mvl0 type macvlan mode bridge`,
    `link set dev mvl0 netns ${pod.name}`,
  ]);
  await ipBatch(pod, ['link set dev mvl0 name eth0', 'addr add 10.78.0.2/24 dev eth0', 'link set eth0 up', 'link set lo up']);
  await waitLinkLocal(pod, 'eth0');
  return { pod, host };
}

async function sysfsDevInNetns(ns: NetnsRef, ifname: string): Promise<string> {
  const idx = (await run('ip', ['netns', 'exec', ns.name!, 'cat', `/sys/class/net/${ifname}/ifindex`])).stdout.trim();
  return (await run('ip', ['netns', 'exec', ns.name!, 'cat', `/sys/class/net/${ifname}/macvtap/tap${idx}/dev`])).stdout.trim();
}

const cases: {
  label: string;
  kind: NetlinkKind;
  make: (t: Parameters<typeof tempNetns>[0]) => Promise<{ pod: NetnsRef }>;
  type: string;
}[] = [
  { label: 'veth', kind: 'spawn', make: (t) => podWithVeth(t, { mtu: 1450 }), type: 'virtual' },
  { label: 'veth (coprocess)', kind: 'coprocess', make: (t) => podWithVeth(t, { mtu: 1450 }), type: 'virtual' },
  { label: 'macvlan', kind: 'spawn', make: podWithMacvlan, type: 'macvlan' },
];

for (const c of cases) {
  t.test(`${c.label} + macvtap model: MAC swap, addresses and routes saved and restored, private device node`, async (t) => {
    const { pod } = await c.make(t);
    await ipBatch(pod, [
      'link set dev eth0 txqueuelen 777',
      'addr add 10.79.0.9/16 dev eth0',
      'addr add fd00:77::2/64 dev eth0 nodad',
      'route add default via 10.79.0.1 dev eth0',
      'route add 10.200.0.0/16 via 10.79.0.1 dev eth0 mtu 1300',
      'route add fd00:99::/64 via fd00:77::1 dev eth0',
    ]);
    const ctx = await makeCtx(t, pod, { kind: c.kind });
    const link = await readLink(ctx, 'eth0');
    const before = await snapshot(pod);
    const a = await attachEndpoint(ctx, { link, index: 2, model: 'macvtap', queues: 2, vhost: true });
    t.equal(a.resources.type, c.type);

    const ls = await links(pod);
    const mvt = ls.find((l) => l.ifname === 'tap2_kata');
    const eth0 = ls.find((l) => l.ifname === 'eth0');
    t.equal(mvt?.linkinfo?.info_kind, 'macvtap');
    t.equal(mvt?.linkinfo?.info_data?.mode, 'bridge');
    t.equal(mvt?.address, link.mac, 'the macvtap takes the original MAC');
    t.equal(mvt?.mtu, link.mtu, 'MTU from the link');
    t.equal((mvt as { txqlen?: number } | undefined)?.txqlen, 777, 'txqlen from the link');
    t.ok(mvt?.flags.includes('UP'));
    t.not(eth0?.address, link.mac, 'the link got another MAC');
    t.equal(parseInt(eth0!.address.slice(0, 2), 16) & 0x03, 0x02, 'a locally administered unicast MAC');
    t.equal((await ipIn(pod, '-j', 'addr', 'show', 'dev', 'eth0')).includes('"local"'), false, 'the link has no addresses');
    t.equal(a.guest.interfaces?.[0]?.hwAddr, link.mac, 'guest MAC = original MAC');
    t.same(a.guest.interfaces?.[0]?.IPAddresses, link.addresses, 'the guest gets the addresses');

    const dev = a.devices[0] as { kind: string; devPath: string; ifname: string; mac: string; queues: number };
    t.match(dev, { kind: 'net-macvtap', id: 'net2', ifname: 'tap2_kata', mac: link.mac, queues: 2, vhost: true });
    t.ok(dev.devPath.startsWith(`${ctx.runDir}/`), 'the node is private to the sandbox run dir');
    const st = await stat(dev.devPath);
    t.ok(st.isCharacterDevice(), 'a character device');
    t.equal(st.mode & 0o777, 0o600, 'mode 600');
    const { major, minor } = splitDevNumber(st.rdev);
    t.equal(`${major}:${minor}`, await sysfsDevInNetns(pod, 'tap2_kata'), 'major:minor from the namespace sysfs');
    const fh = await open(dev.devPath, 'r+');
    await fh.close();
    t.pass('the node opens');

    t.same(await checkEndpoint(ctx, a), [], 'check: healthy');

    await detachEndpoint(ctx, a);
    t.same(await snapshot(pod), before, 'MAC, addresses and routes restored; macvtap gone');
    t.same(await listDir(ctx.runDir), [], 'device node removed');
    await detachEndpoint(ctx, a);
    t.same(await snapshot(pod), before, 'a second detach changes nothing');
  });
}

t.test('macvtap model check notices an unswapped MAC and a missing node', async (t) => {
  const { pod } = await podWithVeth(t);
  const ctx = await makeCtx(t, pod);
  const link = await readLink(ctx, 'eth0');
  const a = await attachEndpoint(ctx, { link, index: 0, model: 'macvtap', queues: 1, vhost: false });
  await ipIn(pod, 'link', 'set', 'dev', 'tap0_kata', 'address', '02:aa:bb:cc:dd:ee');
  t.match(await checkEndpoint(ctx, a), [/MAC mismatch: macvtap tap0_kata/]);
  await run('rm', ['-f', a.resources.devNode!]);
  t.ok((await checkEndpoint(ctx, a)).some((p) => /device node .* is missing/.test(p)));
  await detachEndpoint(ctx, a);
  t.equal((await readLink(ctx, 'eth0')).mac, link.mac);
});
