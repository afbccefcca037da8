/**
 * UpdateRoutes is all or nothing (red-team D16): when one route fails (an unreachable gateway),
 * the routes before it that were added are deleted and the ones replaced are as they were, IPv4
 * and IPv6 alike, through both Ip implementations of the agent. A successful call still applies.
 */
import t from 'tap';
import type { Route } from '../../../host/agent-types.js';
import { run } from '../../../host/exec.js';
import { makeCoprocessIp } from '../../../guest/agent/ip-coprocess.js';
import { makeIp, type Ip } from '../../../guest/agent/ip.js';
import { updateRoutes, type NetworkContext } from '../../../guest/agent/network.js';
import { spawnRunner } from '../../../guest/agent/runner.js';
import { tempNetns } from '../../helpers/netns.js';

const base = { source: '', scope: 0, family: 0, flags: 0, mtu: 0, gateway: '', device: 'eth2' } as const;

/** The main table as the kernel dumps it (every field), for an exact before/after comparison. */
async function mainTable(ns: string): Promise<unknown[]> {
  const all = JSON.parse((await run('ip', ['-n', ns, '-j', '-d', 'route', 'show', 'table', 'all'])).stdout) as { table?: string }[];
  return all.filter((r) => r.table === 'main');
}

for (const kind of ['spawned', 'coprocess'] as const) {
  t.test(`${kind}: a failing route leaves the table exactly as it was`, async (t) => {
    const ns = (await tempNetns(t, 'groutes')).name!;
    await run('ip', ['-n', ns, '-batch', '-'], {
      input: [
        'link add eth2 type veth peer name peer2',
        'link set peer2 up',
        'link set eth2 up',
        'addr add 10.99.0.2/24 dev eth2',
        'addr add fd00:99::2/64 dev eth2 nodad',
        'route add default via 10.99.0.1 dev eth2',
        'route add 10.60.0.0/16 via 10.99.0.1 dev eth2 mtu 1400',
        '',
      ].join('\n'),
    });
    let ip: Ip = makeIp(spawnRunner, ['-n', ns], `netns ${ns}`);
    if (kind === 'coprocess') {
      const co = makeCoprocessIp({ prefix: ['-n', ns], label: `netns ${ns}` });
      t.teardown(() => co.close());
      ip = co;
    }
    const ctx: NetworkContext = { ip, ipv6Disabled: async () => false };
    const before = await mainTable(ns);

    // The red-team reproduction: the first route applies, the second has a gateway nobody reaches.
    const d16: Route[] = [
      { ...base, dest: '10.52.0.0/16' },
      { ...base, dest: '10.53.0.0/16', gateway: '1.2.3.4' },
    ];
    await t.rejects(updateRoutes(ctx, d16), {
      code: 'E_NETLINK',
      message: /1\.2\.3\.4.*no route was changed \(the others were rolled back\)/,
    });
    t.same(await mainTable(ns), before, 'D16: 10.52.0.0/16 is not left behind');

    // Added, replaced (gateway and MTU), IPv6 added, then a failure: all of it is undone.
    const mixed: Route[] = [
      { ...base, dest: '10.70.0.0/16', scope: 253 },
      { ...base, dest: 'fd00:70::/64', family: 1 },
      { ...base, dest: '10.60.0.0/16', gateway: '10.99.0.254', mtu: 1300 },
      { ...base, dest: '', gateway: '10.99.0.253' },
      { ...base, dest: '10.54.0.0/16', gateway: '203.0.113.9' },
    ];
    await t.rejects(updateRoutes(ctx, mixed), { code: 'E_NETLINK', message: /203\.0\.113\.9.*rolled back/ });
    t.same(await mainTable(ns), before, 'added routes deleted, replaced ones (default, 10.60/16 with its mtu) restored');

    // Without a failure the routes apply, as before.
    const res = await updateRoutes(ctx, mixed.slice(0, 4));
    t.ok(
      ['10.70.0.0/16', 'fd00:70::/64'].every((d) => res.Routes.some((r) => r.dest === d)),
      'a call without a failing route applies all',
    );
    t.equal(res.Routes.find((r) => r.dest === '10.60.0.0/16')?.gateway, '10.99.0.254');
  });
}
