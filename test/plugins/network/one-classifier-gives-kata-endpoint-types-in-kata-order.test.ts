import t from 'tap';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endpointTypeOf as detectEndpointType } from '../../../plugins/network/detect.js';
import type { ScannedLink } from '../../../plugins/network/types.js';

function link(over: Partial<ScannedLink>): ScannedLink {
  return {
    name: 'eth0',
    index: 2,
    kind: 'veth',
    mac: '02:00:00:00:00:01',
    mtu: 1500,
    txqlen: 1000,
    up: true,
    rawFlags: 0x1003,
    addresses: [{ family: 0, address: '10.0.0.2', mask: '24' }],
    ...over,
  };
}

t.test('kinds map to Kata endpoint types', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-vhu-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const o = { vhostUserDir: dir };
  t.equal(detectEndpointType(link({ kind: 'veth' }), o), 'virtual');
  t.equal(detectEndpointType(link({ kind: 'macvlan' }), o), 'macvlan');
  t.equal(detectEndpointType(link({ kind: 'ipvlan' }), o), 'ipvlan');
  t.equal(detectEndpointType(link({ kind: 'macvtap' }), o), 'macvtap');
  t.equal(detectEndpointType(link({ kind: 'tun', tunMode: 'tap' }), o), 'tuntap');
});

t.test('TUN mode and unknown kinds are E_UNSUPPORTED naming the link and kind', async (t) => {
  t.throws(() => detectEndpointType(link({ name: 'tun7', kind: 'tun', tunMode: 'tun' })), {
    code: 'E_UNSUPPORTED',
    message: /tun7.*TUN devices are not supported, only TAP/,
  });
  t.throws(() => detectEndpointType(link({ name: 'nk0', kind: 'netkit' })), { code: 'E_UNSUPPORTED', message: /nk0.*"netkit"/ });
  t.throws(() => detectEndpointType(link({ name: 'vx0', kind: 'vxlan' })), { code: 'E_UNSUPPORTED', message: /vxlan/ });
  t.throws(() => detectEndpointType(link({ kind: 'tun' })), { code: 'E_UNSUPPORTED' });
});

t.test('a plain device with no netlink kind is driven like a veth, as the scan reports it (kata#12891)', async (t) => {
  t.equal(detectEndpointType(link({ name: 'sf0', kind: '' })), 'virtual');
  t.equal(detectEndpointType(link({ name: 'sf1', kind: 'device' })), 'virtual');
});

t.test('a PCI address wins over everything (physical)', async (t) => {
  t.equal(detectEndpointType(link({ kind: '', pciAddress: '0000:3b:00.1' })), 'physical');
  t.equal(detectEndpointType(link({ kind: 'veth', pciAddress: '0000:3b:00.1' })), 'physical');
});

t.test('vhost-user: a socket at <dir>/vhostuser_<IP>/vhu.sock for one of the addresses', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-vhu-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const l = link({
    kind: 'tun',
    tunMode: 'tap',
    addresses: [
      { family: 0, address: '10.0.0.2', mask: '24' },
      { family: 1, address: 'fd00::2', mask: '64' },
    ],
  });
  t.equal(detectEndpointType(l, { vhostUserDir: dir }), 'tuntap', 'no socket yet');
  await mkdir(join(dir, 'vhostuser_fd00::2'));
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(join(dir, 'vhostuser_fd00::2', 'vhu.sock'), r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  t.equal(detectEndpointType(l, { vhostUserDir: dir }), 'vhost-user', 'the second address has a socket');
  t.equal(detectEndpointType({ ...l, pciAddress: '0000:00:01.0' }, { vhostUserDir: dir }), 'physical', 'physical is checked first');
});
