/**
 * The guest agent's network calls, run on the host against a namespace we create (the same code the
 * guest runs, with `ip -n NS`), through both Ip implementations: one `ip` spawned per call, and the
 * long-lived `ip -batch` coprocess the guest agent uses.
 */
import t from 'tap';
import type { Interface, Route } from '../../../host/agent-types.js';
import { run } from '../../../host/exec.js';
import { makeIp, type Ip } from '../../../guest/agent/ip.js';
import { makeCoprocessIp } from '../../../guest/agent/ip-coprocess.js';
import {
  addArpNeighbors,
  listInterfaces,
  listRoutes,
  updateInterface,
  updateRoutes,
  type NetworkContext,
} from '../../../guest/agent/network.js';
import { spawnRunner } from '../../../guest/agent/runner.js';
import { tempNetns } from '../../helpers/netns.js';

interface Recorded {
  lines: string[];
}

type Kind = 'spawned' | 'coprocess';

/** A context whose ip runs in `ns`, recording every batch it sends. */
function ctxIn(t: { teardown(fn: () => unknown): void }, kind: Kind, ns: string, rec: Recorded[] = []): NetworkContext {
  let ip: Ip;
  if (kind === 'spawned') {
    ip = makeIp(spawnRunner, ['-n', ns], `netns ${ns}`);
  } else {
    const co = makeCoprocessIp({ prefix: ['-n', ns], label: `netns ${ns}` });
    t.teardown(() => co.close());
    ip = co;
  }
  const recording: Ip = {
    label: ip.label,
    json: (args) => ip.json(args),
    batch: (lines, opts) => {
      rec.push({ lines: [...lines] });
      return ip.batch(lines, opts);
    },
  };
  return { ip: recording, ipv6Disabled: async () => false };
}

async function linkJson(
  ns: string,
  dev: string,
): Promise<{
  ifname: string;
  address: string;
  mtu: number;
  flags: string[];
  addr_info: { local: string; prefixlen: number; family: string }[];
}> {
  const out = JSON.parse((await run('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', dev])).stdout);
  return out[0];
}

const MAC = '02:aa:bb:cc:dd:01';

function iface(over: Partial<Interface> = {}): Interface {
  return {
    device: 'eth0',
    name: 'eth0',
    hwAddr: MAC,
    devicePath: '',
    type: 'veth',
    raw_flags: 0,
    mtu: 1400,
    IPAddresses: [
      { family: 0, address: '10.9.0.2', mask: '24' },
      { family: 1, address: 'fd00:9::2', mask: '64' },
    ],
    ...over,
  };
}

async function vethWithMac(ns: string, name: string, mac: string, peer: string): Promise<void> {
  await run('ip', ['-n', ns, 'link', 'add', name, 'address', mac, 'type', 'veth', 'peer', 'name', peer]);
  await run('ip', ['-n', ns, 'link', 'set', peer, 'up']);
}

for (const kind of ['spawned', 'coprocess'] as const) {
  t.test(`${kind}: UpdateInterface finds the veth by MAC, replaces addresses, sets MTU, name and up`, async (t) => {
    const ns = (await tempNetns(t, 'gagent')).name!;
    await vethWithMac(ns, 'veth-odd', MAC, 'peer0');
    // An address that must go (not asked for) and a link that is not ours.
    await run('ip', ['-n', ns, 'addr', 'add', '192.168.77.5/24', 'dev', 'veth-odd']);
    const rec: Recorded[] = [];
    const ctx = ctxIn(t, kind, ns, rec);

    const result = await updateInterface(ctx, iface());
    t.equal(result.name, 'eth0', 'the answer describes the link under its new name');
    t.equal(result.hwAddr, MAC);

    const l = await linkJson(ns, 'eth0');
    t.equal(l.address, MAC, 'the link found by MAC was renamed to eth0');
    t.equal(l.mtu, 1400);
    t.ok(l.flags.includes('UP'), 'link is up');
    const addrs = l.addr_info
      .filter((a) => !(a.family === 'inet6' && a.local.startsWith('fe80')))
      .map((a) => `${a.local}/${a.prefixlen}`)
      .sort();
    t.same(addrs, ['10.9.0.2/24', 'fd00:9::2/64'], 'requested addresses set, the stale one removed');
    t.ok(
      rec.some((r) => r.lines.includes('link set dev veth-odd down')),
      'the link is set down before it is changed',
    );

    // Applying the same interface again is a no-op in effect (addresses replaced, not duplicated).
    await updateInterface(ctx, iface());
    const again = await linkJson(ns, 'eth0');
    t.equal(again.addr_info.filter((a) => a.local === '10.9.0.2').length, 1);
  });

  t.test(`${kind}: UpdateInterface falls back to the name, swaps a conflicting name, honours NOARP`, async (t) => {
    const ns = (await tempNetns(t, 'gagent')).name!;
    await vethWithMac(ns, 'first', '02:aa:bb:cc:dd:02', 'p1');
    await vethWithMac(ns, 'eth1', '02:aa:bb:cc:dd:03', 'p2');
    await run('ip', ['-n', ns, 'link', 'set', 'eth1', 'up']);
    const ctx = ctxIn(t, kind, ns);
    // Unknown MAC: found by device name "first"; its MAC is retargeted; the name eth1 is taken by another link.
    await updateInterface(
      ctx,
      iface({
        device: 'first',
        name: 'eth1',
        hwAddr: '02:aa:bb:cc:dd:09',
        raw_flags: 0x80,
        IPAddresses: [{ family: 0, address: '10.8.0.2', mask: '24' }],
        mtu: 1300,
      }),
    );
    const renamed = await linkJson(ns, 'eth1');
    t.equal(renamed.address, '02:aa:bb:cc:dd:09', 'MAC retargeted on the link found by name');
    t.equal(renamed.mtu, 1300);
    t.ok(renamed.flags.includes('NOARP'), 'raw_flags IFF_NOARP turns ARP off');
    const other = await linkJson(ns, 'first');
    t.equal(other.address, '02:aa:bb:cc:dd:03', 'the link that held eth1 now carries the old name');
    t.ok(other.flags.includes('UP'), 'and is up again as it was');

    await t.rejects(updateInterface(ctx, iface({ device: 'nope0', name: 'nope0', hwAddr: '02:00:00:00:00:42' })), {
      code: 'E_LINK_NOT_FOUND',
      message: /Link not found/,
    });
    await t.rejects(updateInterface(ctx, iface({ name: 'way-too-long-name0' })), { code: 'E_INVALID_ARGUMENT' });
  });

  t.test(`${kind}: UpdateRoutes applies no-gateway routes first, replaces, and ListRoutes reads them back`, async (t) => {
    const ns = (await tempNetns(t, 'gagent')).name!;
    await vethWithMac(ns, 'eth0', MAC, 'peer0');
    const rec: Recorded[] = [];
    const ctx = ctxIn(t, kind, ns, rec);
    await updateInterface(ctx, iface());
    const base = { source: '', scope: 0, family: 0, flags: 0, mtu: 0 } as const;
    // The gateway 10.99.0.1 is reachable only through the link route listed AFTER it: the call works
    // only if the agent reorders (the kernel rejects a gateway it cannot reach).
    const routes: Route[] = [
      { ...base, dest: '', gateway: '10.99.0.1', device: 'eth0' },
      { ...base, dest: '172.16.0.0/16', gateway: '10.9.0.1', device: 'eth0', mtu: 1200 },
      { ...base, dest: '10.99.0.0/24', gateway: '', device: 'eth0', scope: 253 },
      { ...base, dest: 'fd00:77::/64', gateway: 'fd00:9::1', device: 'eth0', family: 1 },
    ];
    const res = await updateRoutes(ctx, routes);
    const sent = rec.at(-1)!.lines;
    t.match(sent[0], /^route replace 10\.99\.0\.0\/24 dev eth0 scope 253 proto boot$/, 'no-gateway route first');
    t.match(sent[1], /^route replace 0\.0\.0\.0\/0 via 10\.99\.0\.1 dev eth0/, 'then gateway routes, in their order');

    const find = (dest: string): Route | undefined => res.Routes.find((r) => r.dest === dest);
    t.equal(find('')?.gateway, '10.99.0.1', 'default route present (dest "")');
    t.equal(find('172.16.0.0/16')?.mtu, 1200, 'route MTU kept');
    t.equal(find('10.99.0.0/24')?.scope, 253);
    t.equal(find('fd00:77::/64')?.family, 1);

    // Replace semantics: the same call again succeeds and leaves one default route.
    const again = await updateRoutes(ctx, routes);
    t.equal(again.Routes.filter((r) => r.dest === '' && r.family === 0).length, 1);
    t.same((await listRoutes(ctx)).Routes.length, again.Routes.length);

    await t.rejects(
      updateRoutes(ctx, [{ ...base, dest: '10.50.0.0/16', gateway: '10.123.0.1', device: 'eth0' }]),
      { code: 'E_NETLINK', message: /10\.123\.0\.1|unreachable|Nexthop/i },
      'an unreachable gateway is an error naming the route',
    );
  });

  t.test(`${kind}: AddARPNeighbors adds permanent entries; ListInterfaces reports the links`, async (t) => {
    const ns = (await tempNetns(t, 'gagent')).name!;
    await vethWithMac(ns, 'eth0', MAC, 'peer0');
    const ctx = ctxIn(t, kind, ns);
    await updateInterface(ctx, iface());
    await addArpNeighbors(ctx, [
      { toIPAddress: { family: 0, address: '10.9.0.1', mask: '' }, device: 'eth0', lladdr: '02:11:22:33:44:55', state: 0, flags: 0 },
    ]);
    const neigh = JSON.parse((await run('ip', ['-n', ns, '-j', 'neigh', 'show', 'dev', 'eth0'])).stdout) as {
      dst: string;
      lladdr: string;
      state: string[];
    }[];
    const n = neigh.find((x) => x.dst === '10.9.0.1');
    t.equal(n?.lladdr, '02:11:22:33:44:55');
    t.ok(n?.state.includes('PERMANENT'), 'state 0 means PERMANENT');
    await t.rejects(
      addArpNeighbors(ctx, [
        { toIPAddress: { family: 0, address: '10.9.0.3', mask: '' }, device: 'missing0', lladdr: '02:11:22:33:44:56', state: 0, flags: 0 },
      ]),
      { code: 'E_NETLINK', message: /missing0/ },
    );

    const list = await listInterfaces(ctx);
    const eth0 = list.Interfaces.find((i) => i.name === 'eth0');
    t.equal(eth0?.hwAddr, MAC);
    t.equal(eth0?.mtu, 1400);
    t.equal(eth0?.type, 'veth');
    t.ok(eth0?.IPAddresses.some((a) => a.address === '10.9.0.2' && a.mask === '24' && a.family === 0));
    t.ok(((eth0?.raw_flags ?? 0) & 0x1) !== 0, 'raw_flags carries IFF_UP');
  });
}
