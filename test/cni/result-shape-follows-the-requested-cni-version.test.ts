import t from 'tap';
import { findSandboxInterface, formatResult, normalizeResult, sameNetns } from '../../cni/result.js';

/** Result conversion between the 0.3.x/0.4.0 and 1.x shapes, as the spec's version history asks. */

const v11 = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'veth1', mac: '02:00:00:00:00:01' },
    { name: 'eth0', mac: '02:00:00:00:00:02', mtu: 1450, sandbox: '/run/netns/p', socketPath: '/s', pciID: '0000:00:01.0' },
  ],
  ips: [
    { address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 1 },
    { address: 'fd00::2/64', interface: 1 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1', mtu: 1400, advmss: 1360, priority: 5, table: 100, scope: 0 }],
  dns: { nameservers: ['10.0.0.1'], search: ['a'] },
};

t.test('1.1.0 -> 1.1.0 keeps every field', async (t) => {
  t.same(formatResult(normalizeResult(v11), '1.1.0'), v11);
});

t.test('1.1.0 -> 1.0.0 drops interface mtu/socketPath/pciID and the route extras', async (t) => {
  t.same(formatResult(normalizeResult(v11), '1.0.0'), {
    cniVersion: '1.0.0',
    interfaces: [
      { name: 'veth1', mac: '02:00:00:00:00:01' },
      { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/p' },
    ],
    ips: [
      { interface: 1, address: '10.0.0.2/24', gateway: '10.0.0.1' },
      { interface: 1, address: 'fd00::2/64' },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }],
    dns: { nameservers: ['10.0.0.1'], search: ['a'] },
  });
});

for (const v of ['0.3.0', '0.3.1', '0.4.0']) {
  t.test(`1.1.0 -> ${v} adds ips[].version from the address family`, async (t) => {
    const r = formatResult(normalizeResult(v11), v) as { cniVersion: string; ips: { version: string }[]; interfaces: object[] };
    t.equal(r.cniVersion, v);
    t.same(
      r.ips.map((i) => i.version),
      ['4', '6'],
    );
    t.notOk(
      r.interfaces.some((i) => 'mtu' in i),
      'no mtu',
    );
  });
}

t.test('0.4.0 -> 1.0.0 drops ips[].version; unknown keys are not carried', async (t) => {
  const v04 = {
    cniVersion: '0.4.0',
    interfaces: [{ name: 'eth0', sandbox: '/x', extra: 1 }],
    ips: [{ version: '4', address: '10.1.0.2/16', interface: 0 }],
    dns: {},
    surprise: true,
  };
  t.same(formatResult(normalizeResult(v04), '1.0.0'), {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', sandbox: '/x' }],
    ips: [{ interface: 0, address: '10.1.0.2/16' }],
    dns: {},
  });
});

t.test('sandbox paths match with /var/run folded to /run; interfaces are found by name AND sandbox', async (t) => {
  t.ok(sameNetns('/var/run/netns/a', '/run/netns/a'));
  t.ok(sameNetns('/run/netns/a', '/var/run/netns/a'));
  t.notOk(sameNetns('/run/netns/a', '/run/netns/b'));
  t.notOk(sameNetns(undefined, '/run/netns/a'));
  t.notOk(sameNetns('', '/run/netns/a'));
  const r = normalizeResult({
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0' }, { name: 'eth0', sandbox: '/run/netns/other' }, { name: 'eth0', sandbox: '/var/run/netns/p' }],
  });
  t.equal(findSandboxInterface(r, 'eth0', '/run/netns/p'), 2);
  t.equal(findSandboxInterface(r, 'eth1', '/run/netns/p'), -1);
});
