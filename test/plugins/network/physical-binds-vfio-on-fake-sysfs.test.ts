import t from 'tap';
import { mkdir, mkdtemp, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../host/log.js';
import { SpawnNetlink } from '../../../host/netlink.js';
import type { PluginContext } from '../../../host/plugin.js';
import { Sysfs } from '../../../host/sysfs.js';
import { attachEndpoint, checkEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import type { ScannedLink } from '../../../plugins/network/types.js';

/**
 * There are no PCI NICs on this machine: these tests run against a FAKE sysfs tree in a temp dir
 * (ctx.sysfs root), with regular files standing for driver_override, unbind and drivers_probe and a
 * symlink for the bound driver. They prove the writes and their order, not the kernel's rebinding;
 * where the kernel would rebind, the test moves the driver symlink itself.
 */

const BDF = '0000:3b:00.1';

async function fakeSysfs(t: { teardown(fn: () => unknown): void }, driver: string | undefined): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'krt-sysfs-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const d of ['ixgbevf', 'vfio-pci']) {
    await mkdir(join(root, 'bus/pci/drivers', d), { recursive: true });
    await writeFile(join(root, 'bus/pci/drivers', d, 'unbind'), '');
  }
  await mkdir(join(root, 'bus/pci/devices', BDF), { recursive: true });
  await writeFile(join(root, 'bus/pci/devices', BDF, 'driver_override'), '(null)\n');
  await writeFile(join(root, 'bus/pci/drivers_probe'), '');
  if (driver) await symlink(`../../../bus/pci/drivers/${driver}`, join(root, 'bus/pci/devices', BDF, 'driver'));
  return root;
}

async function bindTo(root: string, driver: string): Promise<void> {
  await unlink(join(root, 'bus/pci/devices', BDF, 'driver')).catch(() => {});
  await symlink(`../../../bus/pci/drivers/${driver}`, join(root, 'bus/pci/devices', BDF, 'driver'));
}

function ctxFor(root: string, runDir: string, faults?: (s: string) => void): PluginContext {
  return {
    sandboxId: 'krt',
    netns: undefined,
    log: silentLogger(),
    netlink: new SpawnNetlink(),
    sysfs: new Sysfs(root),
    runDir,
    ...(faults ? { faults } : {}),
  };
}

const link: ScannedLink = {
  name: 'ens1f1',
  index: 7,
  kind: '',
  mac: '52:54:00:aa:bb:cc',
  mtu: 9000,
  txqlen: 1000,
  up: true,
  rawFlags: 0x1003,
  addresses: [{ family: 0, address: '10.50.0.2', mask: '24' }],
  pciAddress: BDF,
};

const read = (root: string, p: string): Promise<string> => readFile(join(root, p), 'utf8');

t.test('physical: bound to vfio-pci on attach, original driver restored on detach (fake sysfs)', async (t) => {
  const root = await fakeSysfs(t, 'ixgbevf');
  const ctx = ctxFor(root, root);
  const a = await attachEndpoint(ctx, { link, index: 2, model: 'tcfilter', queues: 1, vhost: false });
  t.equal(a.resources.type, 'physical');
  t.same(a.devices, [{ kind: 'vfio', id: 'net2', bdf: BDF, mac: link.mac }]);
  t.match(a.guest.interfaces?.[0], { name: 'ens1f1', hwAddr: link.mac, mtu: 9000, type: 'physical' });
  t.same(a.resources.pci, { bdf: BDF, originalDriver: 'ixgbevf', originalOverride: '(null)', bound: true });
  t.equal(await read(root, `bus/pci/devices/${BDF}/driver_override`), 'vfio-pci', 'driver_override = vfio-pci');
  t.equal(await read(root, 'bus/pci/drivers/ixgbevf/unbind'), BDF, 'unbound from the original driver');
  t.equal(await read(root, 'bus/pci/drivers_probe'), BDF, 'probed');
  t.match(await checkEndpoint(ctx, a), [/bound to ixgbevf, not vfio-pci/], 'check sees the fake kernel did not rebind');
  await bindTo(root, 'vfio-pci'); // what the kernel does on drivers_probe
  t.same(await checkEndpoint(ctx, a), []);

  await writeFile(join(root, 'bus/pci/drivers_probe'), '');
  await detachEndpoint(ctx, a);
  t.equal(await read(root, 'bus/pci/drivers/vfio-pci/unbind'), BDF, 'unbound from vfio-pci');
  t.equal(await read(root, 'bus/pci/drivers_probe'), BDF, 'probed for the original driver');
  t.equal(await read(root, `bus/pci/devices/${BDF}/driver_override`), '\n', 'driver_override cleared again (it was unset)');

  await bindTo(root, 'ixgbevf'); // the kernel rebinds the original driver
  await writeFile(join(root, 'bus/pci/drivers_probe'), '');
  await detachEndpoint(ctx, a);
  t.equal(await read(root, 'bus/pci/drivers_probe'), '', 'a second detach writes nothing');
});

t.test('physical: a function already on vfio-pci is left as it is, before and after', async (t) => {
  const root = await fakeSysfs(t, 'vfio-pci');
  const ctx = ctxFor(root, root);
  const a = await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false });
  t.equal(a.resources.pci?.bound, false);
  t.equal(await read(root, `bus/pci/devices/${BDF}/driver_override`), '(null)\n');
  t.same(await checkEndpoint(ctx, a), []);
  await detachEndpoint(ctx, a);
  t.equal(await read(root, 'bus/pci/drivers/vfio-pci/unbind'), '', 'not unbound');
});

for (const step of ['physical:driver-override', 'physical:unbind', 'physical:probe']) {
  t.test(`physical: a failure at ${step} restores the original binding`, async (t) => {
    const root = await fakeSysfs(t, 'ixgbevf');
    const ctx = ctxFor(root, root, (s) => {
      if (s === step) throw new Error(`injected at ${s}`);
    });
    await t.rejects(attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false }), {
      message: `injected at ${step}`,
    });
    const ov = await read(root, `bus/pci/devices/${BDF}/driver_override`);
    t.ok(ov === '(null)\n' || ov === '\n', `driver_override unset again (${JSON.stringify(ov)})`);
  });
}

t.test('physical: a vanished function and model none are harmless', async (t) => {
  const root = await fakeSysfs(t, 'ixgbevf');
  const ctx = ctxFor(root, root);
  const none = await attachEndpoint(ctx, { link, index: 0, model: 'none', queues: 1, vhost: false });
  t.same(none.devices, []);
  t.equal(await read(root, `bus/pci/devices/${BDF}/driver_override`), '(null)\n', 'model none binds nothing');
  const a = await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false });
  await rm(join(root, 'bus/pci/devices', BDF), { recursive: true });
  await detachEndpoint(ctx, a);
  t.pass('detach after the function disappeared');
  await t.rejects(attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false }), {
    code: 'E_SYSFS',
    message: new RegExp(BDF),
  });
  await t.rejects(
    attachEndpoint(ctx, { link: { ...link, pciAddress: '../../etc' }, index: 0, model: 'tcfilter', queues: 1, vhost: false }),
    { code: 'E_INVALID_ARGUMENT', message: /PCI address/ },
  );
});
