import t from 'tap';
import { IFF_NOARP } from '../../../host/agent-types.js';
import { netnsRef } from '../../../host/netns.js';
import { flagsFromNames, parseLinks, readLink, readLinks } from '../../../plugins/network/link-info.js';
import { tempNetns } from '../../helpers/netns.js';
import { ipBatch, makeCtx } from './endpoint-fixtures.js';

// Trimmed from `ip -json -details addr show` (iproute2 6.1); the PCI entry carries parentbus/parentdev.
const SAMPLE = JSON.stringify([
  {
    ifindex: 1,
    ifname: 'lo',
    flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
    mtu: 65536,
    txqlen: 1000,
    address: '00:00:00:00:00:00',
    addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }],
  },
  {
    ifindex: 3,
    link: 'v1',
    ifname: 'eth0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 1400,
    txqlen: 1000,
    address: 'C2:86:14:86:A3:FA',
    linkinfo: { info_kind: 'veth' },
    addr_info: [
      { family: 'inet', local: '10.1.1.2', prefixlen: 24 },
      { family: 'inet6', local: 'fd00::2', prefixlen: 64 },
    ],
  },
  {
    ifindex: 4,
    ifname: 't0',
    flags: ['BROADCAST', 'MULTICAST'],
    mtu: 1500,
    txqlen: 1000,
    address: '86:d2:88:97:17:fb',
    linkinfo: { info_kind: 'tun', info_data: { type: 'tap', pi: false, vnet_hdr: false } },
    addr_info: [],
  },
  {
    ifindex: 5,
    ifname: 't1',
    flags: ['POINTOPOINT', 'MULTICAST', 'NOARP'],
    mtu: 1500,
    txqlen: 500,
    linkinfo: { info_kind: 'tun', info_data: { type: 'tun' } },
    addr_info: [],
  },
  {
    ifindex: 6,
    ifname: 'ens3',
    flags: ['BROADCAST', 'MULTICAST', 'UP'],
    mtu: 1500,
    txqlen: 1000,
    address: '52:54:00:12:34:56',
    parentbus: 'pci',
    parentdev: '0000:00:03.0',
    addr_info: [],
  },
  {
    ifindex: 7,
    ifname: 'mvt0',
    flags: ['BROADCAST', 'MULTICAST', 'NO-CARRIER', 'UP'],
    mtu: 1500,
    txqlen: 500,
    address: '2e:21:c8:7a:a3:c6',
    linkinfo: { info_kind: 'macvtap', info_data: { mode: 'bridge' } },
    addr_info: [],
  },
]);

t.test('parseLinks turns every entry into a ScannedLink', async (t) => {
  const links = parseLinks(SAMPLE);
  t.same(
    links.map((l) => l.name),
    ['lo', 'eth0', 't0', 't1', 'ens3', 'mvt0'],
  );
  const eth0 = links[1]!;
  t.same(eth0, {
    name: 'eth0',
    index: 3,
    kind: 'veth',
    mac: 'c2:86:14:86:a3:fa',
    mtu: 1400,
    txqlen: 1000,
    up: true,
    rawFlags: 0x1 | 0x2 | 0x1000 | 0x10000 | 0x40,
    addresses: [
      { family: 0, address: '10.1.1.2', mask: '24' },
      { family: 1, address: 'fd00::2', mask: '64' },
    ],
  });
  t.equal(links[2]!.tunMode, 'tap');
  t.equal(links[3]!.tunMode, 'tun');
  t.equal(links[3]!.rawFlags & IFF_NOARP, IFF_NOARP, 'NOARP carried into raw flags');
  t.equal(links[4]!.pciAddress, '0000:00:03.0', 'parentbus pci gives the PCI address');
  t.equal(links[4]!.kind, '');
  t.equal(links[1]!.pciAddress, undefined);
  t.equal(links[5]!.up, true);
  t.equal(links[5]!.rawFlags & 0x40, 0, 'NO-CARRIER means not RUNNING');
});

t.test('flagsFromNames ignores names it does not know', async (t) => {
  t.equal(flagsFromNames(['UP', 'M-DOWN', 'WHATEVER']), 0x41);
  t.equal(flagsFromNames(undefined), 0);
});

t.test('parseLinks accepts an empty output and rejects a non-array', async (t) => {
  t.same(parseLinks(''), []);
  t.throws(() => parseLinks('{"a":1}'), { code: 'E_INTERNAL' });
});

t.test('readLinks and readLink read a real namespace', async (t) => {
  const ns = await tempNetns(t, 'li');
  await ipBatch(ns, [
    'tuntap add dev tp0 mode tap',
    'tuntap add dev tn0 mode tun',
    'addr add 10.5.0.1/24 dev tp0',
    'link set dev tp0 mtu 1300 up',
  ]);
  const ctx = await makeCtx(t, ns);
  const all = await readLinks(ctx);
  t.same(all.map((l) => l.name).sort(), ['lo', 'tn0', 'tp0']);
  const tp0 = await readLink(ctx, 'tp0');
  t.equal(tp0.kind, 'tun');
  t.equal(tp0.tunMode, 'tap');
  t.equal(tp0.mtu, 1300);
  t.same(
    tp0.addresses.filter((a) => a.family === 0),
    [{ family: 0, address: '10.5.0.1', mask: '24' }],
  );
  t.equal((await readLink(ctx, 'tn0')).tunMode, 'tun');
  await t.rejects(readLink(ctx, 'nope0'), { code: 'E_LINK_NOT_FOUND', message: new RegExp(`nope0.*${ns.name}`) });
  await t.rejects(readLink(ctx, 'bad name'), { code: 'E_INVALID_NAME' });
  const gone = await makeCtx(t, netnsRef('krt-li-absent'));
  await t.rejects(readLink(gone, 'tp0'), { code: 'E_NETNS_NOT_FOUND', message: /krt-li-absent/ });
});
