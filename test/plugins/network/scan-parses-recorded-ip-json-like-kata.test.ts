import t from 'tap';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IPFamily, NUD, type Route } from '../../../host/agent-types.js';
import { silentLogger } from '../../../host/log.js';
import type { Netlink } from '../../../host/netlink.js';
import type { PluginContext } from '../../../host/plugin.js';
import { Sysfs } from '../../../host/sysfs.js';
import { guestInterface } from '../../../plugins/network/detect.js';
import { parseNeighbours, parseRoutes, scanNetns, selectEndpoints } from '../../../plugins/network/scan.js';
import type { ScannedLink } from '../../../plugins/network/types.js';

// Recorded from iproute2 6.1 (`ip -json route show table all root 0.0.0.0/0` and `... root ::/0`)
// in a namespace with a ptp-style eth0 and a second link; trimmed to the fields ip printed.
const V4 = [
  { type: 'unicast', dst: '10.2.0.0/24', dev: 'eth0', table: '100', scope: 'link', flags: [] },
  { dst: 'default', gateway: '10.1.0.1', dev: 'eth0', prefsrc: '10.1.0.5', flags: [], metrics: [{ mtu: 1400 }] },
  { dst: '10.1.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.1.0.5', flags: [] },
  { dst: '10.1.0.1', dev: 'eth0', scope: 'link', flags: [] },
  { dst: '10.3.0.0/24', gateway: '10.1.0.1', dev: 'eth0', flags: [], metrics: [{ mtu: 1380 }] },
  { dst: '10.4.0.0/24', dev: 'eth0', protocol: 'static', scope: 'link', flags: ['linkdown'] },
  { dst: '10.9.0.0/16', gateway: '10.1.0.1', dev: 'eth0', flags: ['onlink'] },
  { dst: '10.10.0.0/16', dev: 'other0', protocol: 'static', scope: 'link', flags: [] },
  { dst: '10.11.0.0/16', protocol: 'static', flags: [], nexthops: [{ gateway: '10.1.0.1', dev: 'eth0', weight: 1, flags: [] }] },
  { type: 'blackhole', dst: '10.12.0.0/16', flags: [] },
  { dst: '10.13.0.0/16', via: { family: 'inet6', host: 'fe80::1' }, dev: 'eth0', flags: [] },
  { type: 'local', dst: '10.1.0.5', dev: 'eth0', table: 'local', protocol: 'kernel', scope: 'host', prefsrc: '10.1.0.5', flags: [] },
  {
    type: 'broadcast',
    dst: '127.255.255.255',
    dev: 'lo',
    table: 'local',
    protocol: 'kernel',
    scope: 'link',
    prefsrc: '127.0.0.1',
    flags: [],
  },
];
const V6 = [
  { dst: 'fd00::/64', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [], pref: 'medium' },
  { dst: 'fd01::/64', dev: 'eth0', protocol: 'static', metric: 1024, flags: [], pref: 'medium' },
  { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [], pref: 'medium' },
  { dst: 'default', gateway: 'fd00::1', dev: 'eth0', metric: 1024, flags: [], metrics: [{ mtu: 1300 }], pref: 'medium' },
  { dst: 'default', gateway: 'fe80::1', dev: 'eth0', protocol: 'ra', metric: 1024, flags: [], pref: 'medium' },
  { type: 'local', dst: 'fd00::5', dev: 'eth0', table: 'local', protocol: 'kernel', metric: 0, flags: [], pref: 'medium' },
  { type: 'multicast', dst: 'ff00::/8', dev: 'eth0', table: 'local', protocol: 'kernel', metric: 256, flags: [], pref: 'medium' },
];
const NEIGH = [
  { dst: '10.1.0.1', dev: 'eth0', lladdr: '02:00:00:00:00:01', state: ['REACHABLE'] },
  { dst: '10.1.0.7', dev: 'eth0', lladdr: '02:00:00:00:00:07', state: ['PERMANENT'] },
  { dst: '10.1.0.8', dev: 'eth0', lladdr: '02:00:00:00:00:08', router: null, state: ['PERMANENT'] },
  { dst: '10.1.0.20', dev: 'eth0', lladdr: '02:00:00:00:00:20', state: ['REACHABLE'] },
  { dst: '10.1.0.21', dev: 'eth0', state: ['FAILED'] },
  { dst: '10.1.0.22', dev: 'eth0', state: ['PERMANENT'] },
  { dst: '10.10.0.1', dev: 'other0', lladdr: '02:00:00:00:00:30', state: ['PERMANENT'] },
  { dst: '10.1.0.1', dev: 'eth1', lladdr: '02:00:00:00:00:31', state: ['REACHABLE'] },
  { dst: 'fd00::1', dev: 'eth0', lladdr: '02:00:00:00:00:11', router: null, state: ['STALE'] },
  { dst: 'fe80::1', dev: 'eth0', lladdr: '02:00:00:00:00:12', router: null, state: ['DELAY'] },
  { dst: 'fd00::9', dev: 'eth0', lladdr: '02:00:00:00:00:19', state: ['INCOMPLETE'] },
];

const ETH0 = new Set(['eth0', 'eth1']);

function route(r: Partial<Route>): Route {
  return { dest: '', gateway: '', device: 'eth0', source: '', scope: 0, family: IPFamily.v4, flags: 0, mtu: 0, ...r };
}

t.test('IPv4 routes: main-table unicast routes of kept links, kernel routes dropped, route MTU and onlink kept', async (t) => {
  t.same(parseRoutes(V4, IPFamily.v4, ETH0), [
    route({ gateway: '10.1.0.1', source: '10.1.0.5', mtu: 1400 }),
    route({ dest: '10.1.0.1/32', scope: 253 }),
    route({ dest: '10.3.0.0/24', gateway: '10.1.0.1', mtu: 1380 }),
    // linkdown is the host's state, and a guest kernel refuses it on add: not copied.
    route({ dest: '10.4.0.0/24', scope: 253 }),
    route({ dest: '10.9.0.0/16', gateway: '10.1.0.1', flags: 4 }),
  ]);
});

t.test('IPv6 routes: connected and fe80::/64 kernel routes dropped, RA default kept, family v6', async (t) => {
  t.same(parseRoutes(V6, IPFamily.v6, ETH0), [
    route({ dest: 'fd01::/64', family: IPFamily.v6 }),
    route({ gateway: 'fd00::1', family: IPFamily.v6, mtu: 1300 }),
    route({ gateway: 'fe80::1', family: IPFamily.v6 }),
  ]);
});

t.test('routes of links that are not kept are left out', async (t) => {
  t.same(parseRoutes(V4, IPFamily.v4, new Set(['other0'])), [route({ dest: '10.10.0.0/16', device: 'other0', scope: 253 })]);
  t.same(parseRoutes(V4, IPFamily.v4, new Set()), []);
});

t.test('neighbours: PERMANENT with lladdr, plus default-gateway entries in REACHABLE/STALE/DELAY on the same link', async (t) => {
  const routes = [...parseRoutes(V4, IPFamily.v4, ETH0), ...parseRoutes(V6, IPFamily.v6, ETH0)];
  t.same(parseNeighbours(NEIGH, ETH0, routes), [
    {
      toIPAddress: { family: IPFamily.v4, address: '10.1.0.1', mask: '32' },
      device: 'eth0',
      lladdr: '02:00:00:00:00:01',
      state: NUD.REACHABLE,
      flags: 0,
    },
    {
      toIPAddress: { family: IPFamily.v4, address: '10.1.0.7', mask: '32' },
      device: 'eth0',
      lladdr: '02:00:00:00:00:07',
      state: NUD.PERMANENT,
      flags: 0,
    },
    {
      toIPAddress: { family: IPFamily.v4, address: '10.1.0.8', mask: '32' },
      device: 'eth0',
      lladdr: '02:00:00:00:00:08',
      state: NUD.PERMANENT,
      flags: 0x80,
    },
    {
      toIPAddress: { family: IPFamily.v6, address: 'fd00::1', mask: '128' },
      device: 'eth0',
      lladdr: '02:00:00:00:00:11',
      state: NUD.STALE,
      flags: 0x80,
    },
    {
      toIPAddress: { family: IPFamily.v6, address: 'fe80::1', mask: '128' },
      device: 'eth0',
      lladdr: '02:00:00:00:00:12',
      state: NUD.DELAY,
      flags: 0x80,
    },
  ]);
});

t.test('a REACHABLE gateway neighbour is kept only while a default route uses it', async (t) => {
  const noDefault = parseRoutes(
    V4.filter((r) => r.dst !== 'default'),
    IPFamily.v4,
    ETH0,
  );
  const kept = parseNeighbours(NEIGH, ETH0, noDefault).map((n) => n.toIPAddress.address);
  t.same(kept, ['10.1.0.7', '10.1.0.8']);
});

function link(l: Partial<ScannedLink> & { name: string }): ScannedLink {
  return { index: 2, kind: 'veth', mac: '02:00:00:00:00:02', mtu: 1500, txqlen: 1000, up: true, rawFlags: 0x1003, addresses: [], ...l };
}

const A4 = (address: string, mask = '24') => ({ family: IPFamily.v4, address, mask });
const A6 = (address: string, mask = '64') => ({ family: IPFamily.v6, address, mask });

t.test(
  'interfaces: lo, *_kata and address-less links skipped; Kata types, unknown kinds and TUN skipped; link-local IPv6 kept; NOARP only in raw_flags',
  async (t) => {
    const links = [
      link({ name: 'lo', index: 1, kind: '', rawFlags: 0x8 | 0x1, addresses: [A4('127.0.0.1', '8'), A6('::1', '128')] }),
      link({ name: 'net2', kind: 'macvlan', mac: '02:00:00:00:00:22', rawFlags: 0x1003 | 0x80, addresses: [A4('10.90.0.3')] }),
      link({ name: 'eth0', mtu: 1450, addresses: [A4('10.1.0.5'), A4('127.0.0.9', '8'), A6('fd00::5'), A6('fe80::1:2ff:fe03:405')] }),
      link({ name: 'tap0_kata', kind: 'tun', tunMode: 'tap', addresses: [A4('10.91.0.1')] }),
      link({ name: 'sit0', kind: 'sit', addresses: [] }),
      link({ name: 'net3', addresses: [] }),
      link({ name: 'tap9', kind: 'tun', tunMode: 'tap', addresses: [A4('10.92.0.1')] }),
      link({ name: 'ipvl0', kind: 'ipvlan', addresses: [A4('10.93.0.1')] }),
      link({ name: 'mvt0', kind: 'macvtap', addresses: [A4('10.94.0.1')] }),
      link({ name: 'ens5', kind: '', pciAddress: '0000:00:05.0', addresses: [A4('10.95.0.1')] }),
      link({ name: 'sf0', kind: '', addresses: [A4('10.96.0.1')] }),
      link({ name: 'br0', kind: 'bridge', addresses: [A4('10.97.0.1')] }),
      link({ name: 'wg0', kind: 'wireguard', addresses: [A4('10.98.0.1')] }),
      link({ name: 'tun0', kind: 'tun', tunMode: 'tun', addresses: [A4('10.99.0.1')] }),
    ];
    const r = selectEndpoints(links);
    const interfaces = r.endpoints.map((e) => guestInterface(e.link, e.type));
    t.same(
      r.endpoints.map((e) => e.link.name),
      ['ens5', 'eth0', 'ipvl0', 'mvt0', 'net2', 'sf0', 'tap9'],
    );
    t.same(r.skipped, [
      { name: 'br0', reason: 'unsupported-kind', detail: 'bridge' },
      { name: 'lo', reason: 'loopback' },
      { name: 'net3', reason: 'no-address' },
      { name: 'sit0', reason: 'no-address' },
      { name: 'tap0_kata', reason: 'ours' },
      { name: 'tun0', reason: 'unsupported-kind', detail: 'tun (TUN mode)' },
      { name: 'wg0', reason: 'unsupported-kind', detail: 'wireguard' },
    ]);
    const byName = Object.fromEntries(interfaces.map((i) => [i.name, i]));
    t.same(byName.eth0, {
      device: 'eth0',
      name: 'eth0',
      IPAddresses: [A4('10.1.0.5'), A6('fd00::5'), A6('fe80::1:2ff:fe03:405')],
      mtu: 1450,
      hwAddr: '02:00:00:00:00:02',
      devicePath: '',
      type: 'virtual',
      raw_flags: 0,
    });
    t.equal(byName.net2!.raw_flags, 0x80);
    t.same(Object.fromEntries(interfaces.map((i) => [i.name, i.type])), {
      ens5: 'physical',
      eth0: 'virtual',
      ipvl0: 'ipvlan',
      mvt0: 'macvtap',
      net2: 'macvlan',
      sf0: 'virtual',
      tap9: 'tuntap',
    });
  },
);

t.test('a link with a vhost-user socket at <dir>/vhostuser_<IP>/vhu.sock is "vhost-user"', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-vhu-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const l = link({ name: 'eth0', addresses: [A4('10.1.0.5'), A4('10.1.0.6')] });
  t.equal(selectEndpoints([l], { vhostUserDir: dir }).endpoints[0]!.type, 'virtual');
  // A plain file is not a socket: the convention needs a listening socket.
  mkdirSync(join(dir, 'vhostuser_10.1.0.5'));
  writeFileSync(join(dir, 'vhostuser_10.1.0.5', 'vhu.sock'), '');
  t.equal(selectEndpoints([l], { vhostUserDir: dir }).endpoints[0]!.type, 'virtual');
  mkdirSync(join(dir, 'vhostuser_10.1.0.6'));
  const server = createServer();
  await new Promise<void>((res) => server.listen(join(dir, 'vhostuser_10.1.0.6', 'vhu.sock'), res));
  t.teardown(() => new Promise<void>((res) => server.close(() => res())));
  t.equal(selectEndpoints([l], { vhostUserDir: dir }).endpoints[0]!.type, 'vhost-user');
});

t.test('scanNetns reads through ctx.netlink without leading options for routes and neighbours (coprocess-friendly)', async (t) => {
  const calls: string[][] = [];
  const answers: Record<string, unknown> = {
    '-details addr show': [
      {
        ifindex: 1,
        ifname: 'lo',
        flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
        mtu: 65536,
        address: '00:00:00:00:00:00',
        addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }],
      },
      {
        ifindex: 2,
        ifname: 'eth0',
        flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
        mtu: 1500,
        address: '02:00:00:00:00:02',
        linkinfo: { info_kind: 'veth' },
        addr_info: [{ family: 'inet', local: '10.1.0.5', prefixlen: 24 }],
      },
    ],
    'route show table all root 0.0.0.0/0': V4,
    'route show table all root ::/0': V6,
    'neigh show': NEIGH,
  };
  const fake: Netlink = {
    async batch() {
      throw new Error('scan must not write');
    },
    async json<T>(_tool: string, _ns: unknown, args: readonly string[]) {
      calls.push([...args]);
      const a = answers[args.join(' ')];
      if (a === undefined) throw new Error(`unexpected read ${args.join(' ')}`);
      return a as T;
    },
    async release() {},
    async close() {},
  };
  const ctx: PluginContext = {
    sandboxId: 's',
    netns: undefined,
    log: silentLogger(),
    netlink: fake,
    sysfs: new Sysfs(),
    runDir: '/nonexistent',
  };
  const r = await scanNetns(ctx);
  t.equal(calls.length, 4);
  t.same(
    calls.filter((c) => c[0]!.startsWith('-')).map((c) => c.join(' ')),
    ['-details addr show'],
  );
  t.same(
    r.endpoints.map((e) => e.link.name),
    ['eth0'],
  );
  t.same(
    r.routes.map((x) => [x.family, x.dest]),
    [
      [0, ''],
      [0, '10.1.0.1/32'],
      [0, '10.3.0.0/24'],
      [0, '10.4.0.0/24'],
      [0, '10.9.0.0/16'],
      [1, ''],
      [1, ''],
      [1, 'fd01::/64'],
    ],
  );
  t.same(
    r.neighbors.map((n) => n.toIPAddress.address),
    ['10.1.0.1', '10.1.0.7', '10.1.0.8', 'fd00::1', 'fe80::1'],
  );
});
