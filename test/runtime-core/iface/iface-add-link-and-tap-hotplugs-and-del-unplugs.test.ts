import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { cli, parseJson, podNetwork, tempRuntime, ourLinks, ourQdiscs } from '../../helpers/sandbox.js';

interface GuestIface {
  name: string;
  hwAddr: string;
  mtu: number;
  devicePath: string;
  IPAddresses: { address: string; mask: string }[];
}

t.test('iface add hot-plugs a new pod link and a tap from a description; del unplugs both and removes their host side', async (t) => {
  const rt = tempRuntime(t);
  const net = await podNetwork(t);
  const id = `krt-if-${process.pid}`;
  const c = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, '--netns', net.pod.name!, ...c, '--json']);
  t.equal(up.code, 0, `up: ${up.stderr}`);
  t.teardown(() => cli(['sandbox', 'down', id, ...c]));

  // A second link appears in the pod after the sandbox started (as Docker's late network setup does).
  await run('ip', ['-n', net.host.name!, 'link', 'add', 'krtv1', 'type', 'veth', 'peer', 'name', 'eth1', 'netns', net.pod.name!]);
  await run('ip', ['-n', net.host.name!, '-batch', '-'], { input: 'addr add 10.78.0.1/24 dev krtv1\nlink set krtv1 up\n' });
  await run('ip', ['-n', net.pod.name!, '-batch', '-'], { input: 'addr add 10.78.0.2/24 dev eth1\nlink set eth1 up\n' });
  const eth1Mac = (JSON.parse((await run('ip', ['-n', net.pod.name!, '-j', 'link', 'show', 'eth1'])).stdout) as { address: string }[])[0]!
    .address;

  const a1 = await cli(['iface', 'add', id, '--link', 'eth1', ...c, '--json']);
  t.equal(a1.code, 0, `iface add --link: ${a1.stderr}`);
  const i1 = parseJson<GuestIface>(a1);
  t.equal(i1.name, 'eth1');
  t.equal(i1.hwAddr, eth1Mac, 'guest MAC is the pod link MAC');
  t.match(i1.devicePath, /^[0-9a-f]{2}\/00$/, 'the agent got a PCI path');
  t.same((await ourLinks(net.pod)).sort(), ['tap0_kata', 'tap1_kata']);

  const ping = await cli(['exec', id, ...c, '--', 'ping', '-c', '2', '-W', '3', '10.78.0.1']);
  t.equal(ping.code, 0, `guest reaches the new link's peer through its redirect: ${ping.stdout}${ping.stderr}`);

  const desc = JSON.stringify({
    name: 'eth5',
    hwAddr: '02:11:22:33:44:55',
    mtu: 1400,
    IPAddresses: [{ family: 0, address: '10.79.0.2', mask: '24' }],
  });
  const f = join(rt.dir, 'iface.json');
  writeFileSync(f, desc);
  const a2 = await cli(['iface', 'add', id, f, ...c, '--json']);
  t.equal(a2.code, 0, `iface add FILE: ${a2.stderr}`);
  const i2 = parseJson<GuestIface>(a2);
  t.equal(i2.name, 'eth5');
  t.equal(i2.hwAddr, '02:11:22:33:44:55');
  t.equal(i2.mtu, 1400);

  const list = parseJson<GuestIface[]>(await cli(['iface', 'list', id, ...c, '--json']));
  const byName = Object.fromEntries(list.map((i) => [i.name, i]));
  t.same(Object.keys(byName).sort(), ['eth0', 'eth1', 'eth5', 'lo']);
  t.ok(
    byName.eth5?.IPAddresses.some((a) => a.address === '10.79.0.2' && a.mask === '24'),
    'the guest applied the described address',
  );
  t.equal(byName.eth5?.mtu, 1400);

  const bad = await cli(['iface', 'add', id, '--link', 'nothere0', ...c]);
  t.equal(bad.code, 1, 'a missing link is an error');
  t.match(bad.stderr, /E_LINK_NOT_FOUND.*nothere0/);
  t.same((await ourLinks(net.pod)).sort(), ['tap0_kata', 'tap1_kata', 'tap2_kata'], 'a failed add leaves nothing');

  t.equal((await cli(['iface', 'del', id, 'eth1', ...c])).code, 0);
  t.equal((await cli(['iface', 'del', id, '02:11:22:33:44:55', ...c])).code, 0);
  const after = parseJson<GuestIface[]>(await cli(['iface', 'list', id, ...c, '--json']));
  t.same(after.map((i) => i.name).sort(), ['eth0', 'lo'], 'the guest lost both interfaces');
  t.same(await ourLinks(net.pod), ['tap0_kata'], 'their taps are gone');
  t.same(await ourQdiscs(net.pod, 'eth1'), [], 'no ingress qdisc left on eth1');
  const del2 = await cli(['iface', 'del', id, 'eth1', ...c]);
  t.equal(del2.code, 1, 'removing it again names what is missing');
  t.match(del2.stderr, /E_LINK_NOT_FOUND/);

  t.equal((await cli(['sandbox', 'down', id, ...c])).code, 0);
  t.same(await ourLinks(net.pod), [], 'down removes the rest');
});
