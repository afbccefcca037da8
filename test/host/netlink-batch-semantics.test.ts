import t from 'tap';
import { CoprocessNetlink, SpawnNetlink, parseBatchStderr, batchOrThrow, type Netlink } from '../../host/netlink.js';
import { spawnCount } from '../../host/exec.js';
import { netnsRef } from '../../host/netns.js';
import { tempNetns } from '../helpers/netns.js';

t.test('parseBatchStderr assigns each message to its failed line', async (t) => {
  const { outcome } = parseBatchStderr('Cannot find device "x"\nCommand failed -:2\nError: boom\nCommand failed -:3\n', 3);
  t.same(outcome, [null, 'Cannot find device "x"', 'Error: boom']);
});

for (const [label, make] of [
  ['spawn', () => new SpawnNetlink()],
  ['coprocess', () => new CoprocessNetlink(500)],
] as const) {
  t.test(`${label}: every line runs and failures are reported per line`, async (t) => {
    const ns = await tempNetns(t, 'nl');
    const nl: Netlink = make();
    t.teardown(() => nl.close());
    const out = await nl.batch('ip', ns, [
      'tuntap add dev tapx_kata mode tap',
      'link set dev missing0 up',
      'link set dev tapx_kata mtu 1400 up',
    ]);
    t.equal(out[0], null);
    t.match(out[1], /missing0/);
    t.equal(out[2], null);
    const link = await nl.json<{ mtu: number }[]>('ip', ns, ['link', 'show', 'dev', 'tapx_kata']);
    t.equal(link[0]?.mtu, 1400);
    await t.rejects(nl.json('ip', ns, ['link', 'show', 'dev', 'missing0']), { code: 'E_LINK_NOT_FOUND' });
    const tc = await nl.batch('tc', ns, ['qdisc add dev tapx_kata ingress', 'qdisc add dev tapx_kata ingress']);
    t.equal(tc[0], null);
    t.match(tc[1], /Exclusivity|exists/);
    await t.rejects(batchOrThrow(nl, 'ip', ns, ['link del dev missing0']), { code: 'E_LINK_NOT_FOUND', message: /missing0/ });
    await batchOrThrow(nl, 'ip', ns, ['link del dev tapx_kata']);
  });

  t.test(`${label}: a missing namespace is a typed error naming it`, async (t) => {
    const nl: Netlink = make();
    t.teardown(() => nl.close());
    const ns = netnsRef('krt-does-not-exist');
    await t.rejects(nl.batch('ip', ns, ['link show']), { code: 'E_NETNS_NOT_FOUND', message: /krt-does-not-exist/ });
    await t.rejects(nl.json('ip', ns, ['link', 'show']), { code: 'E_NETNS_NOT_FOUND' });
  });
}

t.test('coprocess: many batches cost one spawn per tool and namespace', async (t) => {
  const ns = await tempNetns(t, 'nl');
  const nl = new CoprocessNetlink(500);
  t.teardown(() => nl.close());
  const before = spawnCount();
  await Promise.all(Array.from({ length: 20 }, (_, i) => nl.batch('ip', ns, [`tuntap add dev tap${i}_kata mode tap`])));
  const names = await nl.json<{ ifname: string }[]>('ip', ns, ['link', 'show']);
  t.equal(names.filter((l) => l.ifname.endsWith('_kata')).length, 20);
  t.equal(spawnCount() - before, 1);
  await nl.release(ns);
});

t.test('coprocess: address reads keep their addresses after link reads and sentinels', async (t) => {
  const ns = await tempNetns(t, 'nl');
  const nl = new CoprocessNetlink(500);
  t.teardown(() => nl.close());
  await nl.batch('ip', ns, ['link set lo up']);
  await nl.json('ip', ns, ['link', 'show', 'dev', 'lo']);
  await nl.batch('ip', ns, ['link set lo up']);
  const a = await nl.json<{ addr_info?: { local: string }[] }[]>('ip', ns, ['addr', 'show', 'dev', 'lo']);
  t.same(
    a[0]?.addr_info?.map((x) => x.local),
    ['127.0.0.1', '::1'],
  );
});

t.test('netnsRef maps /run/netns paths to names and keeps other paths', async (t) => {
  t.same(netnsRef('/var/run/netns/abc'), { name: 'abc', path: '/run/netns/abc' });
  t.same(netnsRef('/proc/1/ns/net'), { path: '/proc/1/ns/net' });
  t.throws(() => netnsRef('a;b'), { code: 'E_INVALID_NAME' });
  t.throws(() => netnsRef('rel/path'), { code: 'E_INVALID_NAME' });
});
