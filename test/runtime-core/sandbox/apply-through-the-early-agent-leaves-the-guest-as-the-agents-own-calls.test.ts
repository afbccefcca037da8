/**
 * The boot-time apply through kata-init's early agent (runtime-core/sandbox/apply-through-exec.ts):
 * the early agent runs in a namespace we create, as it runs in the guest, on a socket an AgentClient
 * connects to; node's agent's own calls (guest/agent/network.ts) run in a second namespace set up the
 * same way. Both must leave the same links, addresses, routes and neighbours. Then what only node's
 * agent can do goes to it: a link found only by its PCI path, a storage kata-init did not mount.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { ARPNeighbor, Interface, Route, Storage } from '../../../host/agent-types.js';
import { run } from '../../../host/exec.js';
import { silentLogger } from '../../../host/log.js';
import { makeIp } from '../../../guest/agent/ip.js';
import { addArpNeighbors, updateInterface, updateRoutes } from '../../../guest/agent/network.js';
import { spawnRunner } from '../../../guest/agent/runner.js';
import { AgentClient } from '../../../runtime-core/agent/client.js';
import { applyThroughExec, type BootRequests } from '../../../runtime-core/sandbox/apply-through-exec.js';
import { buildEarlyAgent, earlyAgentPort } from '../../helpers/early-agent.js';
import { tempNetns } from '../../helpers/netns.js';

const dir = mkdtempSync(join(tmpdir(), 'krt-early-apply-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let bin = '';
t.before(async () => {
  bin = await buildEarlyAgent(dir);
});

const MAC = '02:42:0a:05:00:02';
const SHARE: Storage = {
  driver: 'virtio-fs',
  driver_options: [],
  source: 'kataShared',
  fstype: 'virtiofs',
  options: [],
  mount_point: '/run/kata-containers/shared/containers/',
};

function requests(): BootRequests {
  const iface: Interface = {
    device: 'eth9',
    name: 'eth0',
    hwAddr: MAC,
    IPAddresses: [
      { family: 0, address: '10.5.0.2', mask: '24' },
      { family: 1, address: 'fd00:5::2', mask: '64' },
    ],
    mtu: 1400,
    raw_flags: 0,
    devicePath: '',
    type: '',
  } as Interface;
  const routes = [
    { dest: '10.77.0.0/16', gateway: '10.5.0.1', device: 'eth0', source: '', scope: 0, family: 0 },
    { dest: '', gateway: '10.5.0.1', device: 'eth0', source: '', scope: 0, family: 0 },
    { dest: '10.5.9.0/24', gateway: '', device: 'eth0', source: '', scope: 253, family: 0 },
  ] as Route[];
  const neighbors = [
    { toIPAddress: { family: 0, address: '10.5.0.1', mask: '' }, device: 'eth0', lladdr: '02:42:0a:05:00:01', state: 128, flags: 0 },
  ] as ARPNeighbor[];
  return { interfaces: [iface], routes, neighbors, storages: [SHARE] };
}

/** A namespace with one link as the guest sees a fresh virtio-net device: down, no address. */
async function guestLike(t: Test, tag: string): Promise<string> {
  const ns = (await tempNetns(t, tag)).name!;
  // a veth (this host has no dummy links) whose peer stays beside it, with a fixed MAC too
  await run('ip', [
    '-n',
    ns,
    'link',
    'add',
    'eth9',
    'address',
    MAC,
    'type',
    'veth',
    'peer',
    'name',
    'peer9',
    'address',
    '02:42:0a:05:00:09',
  ]);
  await run('ip', ['-n', ns, 'link', 'set', 'peer9', 'up']);
  return ns;
}

/** What a namespace holds, in a form two of them can be compared by. */
async function state(ns: string): Promise<unknown> {
  const j = async (args: string[]): Promise<Record<string, unknown>[]> =>
    JSON.parse((await run('ip', ['-n', ns, '-j', ...args])).stdout || '[]');
  const links = (await j(['addr', 'show'])).map((l) => ({
    ifname: l.ifname,
    address: l.address,
    mtu: l.mtu,
    flags: l.flags,
    addrs: ((l.addr_info as { local: string; prefixlen: number; scope: string }[]) ?? [])
      .map((a) => `${a.local}/${a.prefixlen} ${a.scope}`)
      .sort(),
  }));
  const routes = [...(await j(['route', 'show', 'table', 'all'])), ...(await j(['-6', 'route', 'show', 'table', 'all']))].map((r) =>
    JSON.stringify(r),
  );
  const neigh = (await j(['neigh', 'show'])).map((n) => JSON.stringify(n));
  return { links, routes: routes.sort(), neigh: neigh.sort() };
}

t.test('through the early agent the guest ends up as with UpdateInterface, UpdateRoutes, AddARPNeighbors', async (t) => {
  const early = await guestLike(t, 'ea');
  const own = await guestLike(t, 'eo');
  const port = await earlyAgentPort(t, bin, dir, { netns: early, env: { EARLY_AGENT_SHAREFS: `kataShared:${SHARE.mount_point}` } });
  const agent = new AgentClient({ socketPath: port.socketPath, log: silentLogger() });
  t.teardown(() => agent.close());
  await agent.waitReady(10_000);
  t.ok(agent.earlyAgent, 'the early agent answered the Check');
  t.equal(agent.bootShare, `kataShared:${SHARE.mount_point}`, 'and said which share kata-init mounted');

  const work = applyThroughExec(agent, requests());
  await Promise.all([work.interfaces, work.routes, work.neighbours, work.storages]);

  const r = requests();
  const ctx = { ip: makeIp(spawnRunner, ['-n', own], `netns ${own}`), ipv6Disabled: async () => false };
  for (const i of r.interfaces) await updateInterface(ctx, i);
  await updateRoutes(ctx, r.routes);
  await addArpNeighbors(ctx, r.neighbors);

  const [mine, theirs] = [await state(early), await state(own)];
  t.same(mine, theirs, 'the same links, addresses, routes and neighbours');
  const eth0 = (mine as { links: { ifname: string; mtu: number; flags: string[]; addrs: string[] }[] }).links.find(
    (l) => l.ifname === 'eth0',
  );
  t.match(
    eth0,
    { mtu: 1400, flags: ['BROADCAST', 'MULTICAST', 'UP'], addrs: ['10.5.0.2/24 global', 'fd00:5::2/64 global'] },
    'eth9 became eth0, up, with its addresses and MTU',
  );
  t.match(await agent.check(), { early: true }, 'the early agent still serves: it had nothing to hand over (the share was mounted)');
});

t.test('a link found only by its PCI path, and an unmounted storage, go to node\u2019s agent', async (t) => {
  for (const [what, req] of [
    [
      'a link found only by its PCI path',
      {
        ...requests(),
        storages: [],
        interfaces: [{ ...requests().interfaces[0]!, hwAddr: '02:42:0a:05:00:99', device: '', devicePath: '01/00' }],
      },
    ],
    [
      'a storage kata-init did not mount',
      { interfaces: [], routes: [], neighbors: [], storages: [{ ...SHARE, mount_point: '/run/elsewhere' }] },
    ],
  ] as [string, BootRequests][]) {
    const ns = await guestLike(t, 'eh');
    const port = await earlyAgentPort(t, bin, dir, { netns: ns, env: { EARLY_AGENT_SHAREFS: `kataShared:${SHARE.mount_point}` } });
    const agent = new AgentClient({ socketPath: port.socketPath, log: silentLogger() });
    await agent.waitReady(10_000);
    const work = applyThroughExec(agent, req);
    const settled = Promise.allSettled([work.interfaces, work.routes, work.neighbours, work.storages]);
    const handed = await port.handover;
    t.match(
      handed,
      what.includes('link') ? /"method":"UpdateInterface"/ : /"method":"AddStorages".*\/run\/elsewhere/,
      `${what}: the call was handed over`,
    );
    agent.close(); // no node's agent here to answer it
    t.match(
      (await settled).find((s) => s.status === 'rejected'),
      { reason: { code: 'E_AGENT' } },
      'and the apply waits for that answer',
    );
  }
});

t.test('an error of the agent\u2019s code is the agent\u2019s error, as its client reports it', async (t) => {
  const ns = await guestLike(t, 'ee');
  const port = await earlyAgentPort(t, bin, dir, { netns: ns });
  const agent = new AgentClient({ socketPath: port.socketPath, log: silentLogger() });
  t.teardown(() => agent.close());
  await agent.waitReady(10_000);
  const all = (w: ReturnType<typeof applyThroughExec>) => Promise.allSettled([w.interfaces, w.routes, w.neighbours, w.storages]);
  const bad = { ...requests(), storages: [], interfaces: [{ ...requests().interfaces[0]!, name: 'way-too-long-name0' }] };
  const [ifs, routes] = await all(applyThroughExec(agent, bad));
  t.match(ifs, {
    status: 'rejected',
    reason: { code: 'E_AGENT', details: { method: 'UpdateInterface', agentCode: 'E_INVALID_ARGUMENT' } },
  });
  t.match(
    routes,
    { status: 'rejected', reason: { code: 'E_AGENT', details: { method: 'UpdateInterface' } } },
    'routes are not tried after a failed interface',
  );
  const gw = {
    ...requests(),
    interfaces: [],
    neighbors: [],
    storages: [],
    routes: [{ dest: '10.8.0.0/16', gateway: '10.99.0.1', device: 'nope0' } as Route],
  };
  const [, r] = await all(applyThroughExec(agent, gw));
  t.match(r, { status: 'rejected', reason: { code: 'E_AGENT', details: { method: 'UpdateRoutes', agentCode: 'E_NETLINK' } } });
});
