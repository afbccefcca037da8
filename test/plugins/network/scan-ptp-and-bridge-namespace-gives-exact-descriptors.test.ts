import t from 'tap';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { IPFamily, NUD, type Interface, type Route } from '../../../host/agent-types.js';
import { run, spawnCount } from '../../../host/exec.js';
import { silentLogger } from '../../../host/log.js';
import { CoprocessNetlink, SpawnNetlink, type Netlink } from '../../../host/netlink.js';
import type { NetnsRef } from '../../../host/netns.js';
import type { PluginContext } from '../../../host/plugin.js';
import { Sysfs } from '../../../host/sysfs.js';
import { guestInterface } from '../../../plugins/network/detect.js';
import { scanNetns } from '../../../plugins/network/scan.js';
import type { ScanResult } from '../../../plugins/network/types.js';
import { tempNetns, vethPair } from '../../helpers/netns.js';

/**
 * A pod namespace as CNI results leave it, plus the things the scan must leave out:
 *
 *   eth0  veth, ptp-style: 10.80.0.5/24 + fd80::5/64, `10.80.0.1 scope link`, default via 10.80.0.1
 *         with `mtu 1400` on the route, IPv6 default via fd80::1 (mtu 1400); a REACHABLE gateway
 *         neighbour, a STALE IPv6 gateway neighbour, PERMANENT ones, and a REACHABLE non-gateway one
 *   net1  veth, bridge-style: 10.88.0.7/16, an `onlink` route through a gateway outside the prefix,
 *         a proto-static link route, and a route in table 100 (not main: dropped)
 *   net2  macvlan with `arp off` (raw_flags NOARP), addrgenmode none (no link-local)
 *   tap9  a user TAP (Kata "tuntap") with an address; its static route carries the host's
 *         `linkdown` flag, which is not copied
 *   br-x  a bridge with an address: a kind Kata has no endpoint for (skipped with a warning)
 *   tun5  a TUN-mode device with an address: skipped with a warning too
 *   tap0_kata  ours, with an address, a route and a neighbour: skipped with all of them
 *   net3  a veth without any address: skipped
 *   lo    skipped
 */
async function buildPod(t: { teardown(fn: () => unknown): void }): Promise<NetnsRef> {
  const host = await tempNetns(t, 'scanh');
  const pod = await tempNetns(t, 'scanp');
  const P = pod.name!;
  const H = host.name!;
  await vethPair(pod, host, { ifname: 'eth0', podAddr: '10.80.0.5/24', hostAddr: '10.80.0.1/24', mtu: 1450, mac: '02:aa:00:00:00:05' });
  await vethPair(pod, host, { ifname: 'net1', podAddr: '10.88.0.7/16', hostAddr: '10.88.0.1/16', mac: '02:aa:00:00:01:07' });
  // net3: veth pair, pod end down and without address.
  await run('ip', ['-n', H, 'link', 'add', 'h3', 'type', 'veth', 'peer', 'name', 'net3', 'netns', P]);
  // net2: macvlan made on a host-side parent, then moved in (as the macvlan CNI plugin does).
  await run('ip', ['-n', H, 'link', 'add', 'mvparent', 'type', 'veth', 'peer', 'name', 'mvpeer']);
  await run('ip', ['-n', H, 'link', 'set', 'mvparent', 'up']);
  await run('ip', [
    '-n',
    H,
    'link',
    'add',
    'link',
    'mvparent',
    'name',
    'mv2',
    'address',
    '02:aa:00:00:02:03',
    'type',
    'macvlan',
    'mode',
    'bridge',
  ]);
  await run('ip', ['-n', H, 'link', 'set', 'mv2', 'netns', P, 'name', 'net2']);
  const lines = [
    // ptp-style eth0
    'addr add fd80::5/64 dev eth0 nodad',
    'route add 10.80.0.1/32 dev eth0 scope link',
    'route add default via 10.80.0.1 dev eth0 src 10.80.0.5 mtu 1400',
    'route add default via fd80::1 dev eth0 mtu 1400',
    // a long reachable time so that the REACHABLE entries stay so while the test runs
    'ntable change name arp_cache dev eth0 base_reachable 3600000',
    'neigh add 10.80.0.1 lladdr 02:bb:00:00:00:01 dev eth0 nud reachable',
    'neigh add 10.80.0.7 lladdr 02:bb:00:00:00:07 dev eth0 nud reachable',
    'neigh add 10.80.0.9 lladdr 02:bb:00:00:00:09 dev eth0 nud permanent',
    'neigh add fd80::1 lladdr 02:bb:00:00:00:11 dev eth0 nud stale',
    'neigh add fd80::9 lladdr 02:bb:00:00:00:19 dev eth0 nud permanent router',
    // bridge-style net1
    'route add 192.168.50.0/24 via 10.89.0.1 dev net1 onlink',
    'route add 10.200.0.0/16 dev net1 proto static',
    'route add 10.201.0.0/16 dev net1 table 100',
    // macvlan net2
    'link set net2 addrgenmode none',
    'link set net2 arp off',
    'addr add 10.90.0.3/24 dev net2',
    'link set net2 up',
    // user tap, no carrier
    'tuntap add dev tap9 mode tap',
    'link set tap9 address 02:aa:00:00:09:09 up',
    'addr add 10.92.0.1/24 dev tap9',
    'route add 10.92.5.0/24 dev tap9 proto static',
    // bridge: unsupported kind
    'link add br-x type bridge',
    'addr add 10.97.0.1/24 dev br-x',
    // a TUN (layer 3) device: no Kata endpoint either
    'tuntap add dev tun5 mode tun',
    'addr add 10.98.0.1/24 dev tun5',
    // ours
    'tuntap add dev tap0_kata mode tap',
    'link set tap0_kata up',
    'addr add 10.91.0.1/24 dev tap0_kata',
    'route add 10.91.5.0/24 dev tap0_kata proto static',
    'neigh add 10.91.0.9 lladdr 02:bb:00:00:00:99 dev tap0_kata nud permanent',
  ];
  await run('ip', ['-n', P, '-batch', '-'], { input: `${lines.join('\n')}\n` });
  // The kernel adds the EUI-64 link-local address once it has processed the carrier change (via
  // linkwatch, up to a second later): wait for both so the scan sees a settled namespace.
  await waitFor(async () => {
    const out = JSON.parse((await run('ip', ['-n', P, '-j', '-6', 'addr', 'show', 'scope', 'link'])).stdout) as { ifname: string }[];
    return ['eth0', 'net1'].every((n) => out.some((l) => l.ifname === n));
  }, 'link-local addresses on eth0 and net1');
  return pod;
}

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const v4 = (address: string, mask: string) => ({ family: IPFamily.v4, address, mask });
const v6 = (address: string, mask: string) => ({ family: IPFamily.v6, address, mask });
function route(r: Partial<Route> & { device: string }): Route {
  return { dest: '', gateway: '', source: '', scope: 0, family: IPFamily.v4, flags: 0, mtu: 0, ...r };
}

/** Links reduced to what the scan decides (index and txqlen are the kernel's business). */
type Reduced = Omit<ScanResult, 'endpoints'> & { links: string[]; interfaces: Interface[] };

function expected(): Reduced {
  return {
    links: ['eth0', 'net1', 'net2', 'tap9'],
    interfaces: [
      {
        device: 'eth0',
        name: 'eth0',
        // EUI-64 link-local from 02:aa:00:00:00:05 (U/L bit flipped): fe80::aa:ff:fe00:5
        IPAddresses: [v4('10.80.0.5', '24'), v6('fd80::5', '64'), v6('fe80::aa:ff:fe00:5', '64')],
        mtu: 1450,
        hwAddr: '02:aa:00:00:00:05',
        devicePath: '',
        type: 'virtual',
        raw_flags: 0,
      },
      {
        device: 'net1',
        name: 'net1',
        IPAddresses: [v4('10.88.0.7', '16'), v6('fe80::aa:ff:fe00:107', '64')],
        mtu: 1500,
        hwAddr: '02:aa:00:00:01:07',
        devicePath: '',
        type: 'virtual',
        raw_flags: 0,
      },
      {
        device: 'net2',
        name: 'net2',
        IPAddresses: [v4('10.90.0.3', '24')],
        mtu: 1500,
        hwAddr: '02:aa:00:00:02:03',
        devicePath: '',
        type: 'macvlan',
        raw_flags: 0x80,
      },
      {
        device: 'tap9',
        name: 'tap9',
        IPAddresses: [v4('10.92.0.1', '24')],
        mtu: 1500,
        hwAddr: '02:aa:00:00:09:09',
        devicePath: '',
        type: 'tuntap',
        raw_flags: 0,
      },
    ],
    routes: [
      route({ device: 'eth0', gateway: '10.80.0.1', source: '10.80.0.5', mtu: 1400 }),
      route({ device: 'eth0', dest: '10.80.0.1/32', scope: 253 }),
      route({ device: 'eth0', family: IPFamily.v6, gateway: 'fd80::1', mtu: 1400 }),
      route({ device: 'net1', dest: '10.200.0.0/16', scope: 253 }),
      route({ device: 'net1', dest: '192.168.50.0/24', gateway: '10.89.0.1', flags: 4 }),
      route({ device: 'tap9', dest: '10.92.5.0/24', scope: 253 }),
    ],
    neighbors: [
      { toIPAddress: v4('10.80.0.1', '32'), device: 'eth0', lladdr: '02:bb:00:00:00:01', state: NUD.REACHABLE, flags: 0 },
      { toIPAddress: v4('10.80.0.9', '32'), device: 'eth0', lladdr: '02:bb:00:00:00:09', state: NUD.PERMANENT, flags: 0 },
      { toIPAddress: v6('fd80::1', '128'), device: 'eth0', lladdr: '02:bb:00:00:00:11', state: NUD.STALE, flags: 0 },
      { toIPAddress: v6('fd80::9', '128'), device: 'eth0', lladdr: '02:bb:00:00:00:19', state: NUD.PERMANENT, flags: 0x80 },
    ],
  };
}

function ctxFor(ns: NetnsRef, netlink: Netlink, log = silentLogger()): PluginContext {
  return { sandboxId: 'scan-test', netns: ns, log, netlink, sysfs: new Sysfs(), runDir: '/nonexistent' };
}

/** The scan as the guest gets it: the kept links and their Interface descriptors (detect.ts guestInterface). */
function reduce(r: ScanResult): Reduced {
  const { endpoints, ...rest } = r;
  return { ...rest, links: endpoints.map((e) => e.link.name), interfaces: endpoints.map((e) => guestInterface(e.link, e.type)) };
}

for (const [label, make] of [
  ['spawn', () => new SpawnNetlink()],
  ['coprocess', () => new CoprocessNetlink(500)],
] as const) {
  t.test(`${label}: a ptp + bridge style pod namespace scans to exactly the expected descriptors`, async (t) => {
    const pod = await buildPod(t);
    const nl = make();
    t.teardown(() => nl.close());
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)));
        cb();
      },
    });
    const r = await scanNetns(ctxFor(pod, nl, pino({ level: 'warn' }, sink)));
    t.same(reduce(r), expected());
    // The scanned links carry what attach needs.
    t.match(r.endpoints.find((e) => e.link.name === 'tap9')?.link, { kind: 'tun', tunMode: 'tap' });
    t.match(r.endpoints.find((e) => e.link.name === 'net2')?.link, { kind: 'macvlan', up: true });
    t.same(
      lines.map((l) => [l.level, l.link, l.kind]),
      [
        [40, 'br-x', 'bridge'],
        [40, 'tun5', 'tun (TUN mode)'],
      ],
      'a warning for each kind without endpoint',
    );
    // Few spawns: four reads, plus the ingress filters of tap0_kata (the one tap that is not an
    // endpoint: is it joined to one by a CNI plugin?); through warm coprocesses only the detailed
    // link read spawns.
    const before = spawnCount();
    t.same(reduce(await scanNetns(ctxFor(pod, nl))), expected(), 'a second scan gives the same');
    t.equal(spawnCount() - before, label === 'spawn' ? 5 : 1, 'process spawns of one scan');
    await nl.release(pod);
  });
}

t.test('an empty namespace (only lo) scans to nothing', async (t) => {
  const ns = await tempNetns(t, 'scane');
  await run('ip', ['-n', ns.name!, 'link', 'set', 'lo', 'up']);
  const nl = new SpawnNetlink();
  t.same(await scanNetns(ctxFor(ns, nl)), { endpoints: [], routes: [], neighbors: [] });
});

t.test('a missing namespace is a typed error naming it', async (t) => {
  const nl = new SpawnNetlink();
  const ns = { name: 'krt-scan-missing', path: '/run/netns/krt-scan-missing' };
  await t.rejects(scanNetns(ctxFor(ns, nl)), { code: 'E_NETNS_NOT_FOUND', message: /krt-scan-missing/ });
});
