import t from 'tap';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childrenOfKind, parsePciPath, pciDeviceDir, pciPathOf, waitFor } from '../../../guest/agent/pci-path.js';
import { findLink, type IpAddrLink } from '../../../guest/agent/network.js';
import { makeIp } from '../../../guest/agent/ip.js';

/** A fake sysfs: a virtio-net behind root port 00:02.0 (bus 01, slot 00) and a virtio-blk at 00:04.0. */
async function fakeSysfs(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'krt-sysfs-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const net = join(root, 'devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio3');
  await mkdir(join(net, 'net/eth1'), { recursive: true });
  await mkdir(join(root, 'devices/pci0000:00/0000:00:04.0/virtio1/block/vdb'), { recursive: true });
  await mkdir(join(root, 'devices/pci0000:00/0000:00:1f.2'), { recursive: true });
  await mkdir(join(root, 'class/net/eth1'), { recursive: true });
  await symlink(net, join(root, 'class/net/eth1/device'));
  await writeFile(join(root, 'devices/pci0000:00/0000:00:02.0/vendor'), '0x1b36\n');
  return root;
}

t.test('parsePciPath accepts Kata slot paths and rejects junk', async (t) => {
  t.same(parsePciPath('02/00'), [
    { slot: 2, fn: 0 },
    { slot: 0, fn: 0 },
  ]);
  t.same(parsePciPath('1f.2'), [{ slot: 0x1f, fn: 2 }]);
  t.throws(() => parsePciPath('02/zz'), { code: 'E_INVALID_ARGUMENT' });
  t.throws(() => parsePciPath('20'), { code: 'E_INVALID_ARGUMENT' }, 'slot above 1f');
  t.throws(() => parsePciPath(''), { code: 'E_INVALID_ARGUMENT' });
});

t.test('a PCI path leads to the device, its netdev or disk, and back', async (t) => {
  const sysfs = await fakeSysfs(t);
  const dev = await pciDeviceDir(sysfs, '02/00');
  t.match(dev, /0000:00:02\.0\/0000:01:00\.0$/);
  t.same(await childrenOfKind(dev!, 'net'), ['eth1'], 'netdev found below virtioN');
  const blk = await pciDeviceDir(sysfs, '04');
  t.same(await childrenOfKind(blk!, 'block'), ['vdb']);
  t.equal(await pciDeviceDir(sysfs, '03/00'), undefined, 'absent slot');
  t.equal(await pciDeviceDir(sysfs, '02/01'), undefined, 'absent slot behind the bridge');
  t.equal(await pciPathOf(join(sysfs, 'class/net/eth1/device')), '02/00', 'reverse lookup from /sys/class/net/X/device');
  t.equal(await pciPathOf(join(sysfs, 'class/net/none/device')), '', 'no device link: empty path');
});

t.test('UpdateInterface by devicePath waits for the hotplugged netdev', async (t) => {
  const sysfs = await fakeSysfs(t);
  const links: IpAddrLink[] = [
    { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK'], mtu: 65536, link_type: 'loopback', address: '00:00:00:00:00:00' },
    { ifindex: 3, ifname: 'eth1', flags: [], mtu: 1500, link_type: 'ether', address: '52:54:00:00:00:01' },
  ];
  const ip = makeIp(async () => ({ stdout: JSON.stringify(links), stderr: '', exitCode: 0, timedOut: false, truncated: false }));
  const iface = {
    device: 'eth0',
    name: 'eth0',
    hwAddr: '02:00:00:00:00:07',
    devicePath: '02/00',
    IPAddresses: [],
    mtu: 0,
    type: '',
    raw_flags: 0,
  };
  const found = await findLink({ ip, sysfs, deviceTimeoutMs: 500 }, iface, links);
  t.equal(found.link.ifname, 'eth1', 'the netdev at 02/00');
  t.equal(found.setMac, true, 'its MAC differs from hwAddr: it will be set');

  const started = Date.now();
  await t.rejects(findLink({ ip, sysfs, deviceTimeoutMs: 200 }, { ...iface, devicePath: '05/00' }, links), {
    code: 'E_DEVICE_TIMEOUT',
    message: /05\/00/,
  });
  t.ok(Date.now() - started >= 150, 'it waited before giving up');
});

t.test('waitFor polls until the probe answers', async (t) => {
  let n = 0;
  t.equal(await waitFor('thing', 1000, async () => (++n >= 3 ? 'yes' : undefined), 5), 'yes');
  t.equal(n, 3);
});
