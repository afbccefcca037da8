import t from 'tap';
import {
  GUEST_MODULES,
  moduleName,
  parseModulesBuiltin,
  parseModulesDep,
  resolveModules,
} from '../../../runtime-core/guest-kit/modules.js';

// Lines as depmod writes them for Debian's 6.1 kernel.
const DEP = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/fuse/fuse.ko:
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`;

t.test('module names are normalised like the kernel does', async (t) => {
  t.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko'), 'virtio_rng');
  t.equal(moduleName('crc32c-intel.ko.xz'), 'crc32c_intel');
  t.equal(moduleName('ext4'), 'ext4');
});

t.test('every module comes after its dependencies, each once', async (t) => {
  const r = resolveModules(['virtiofs', 'ext4', 'virtio_pci', 'virtio-rng', 'virtio_blk'], parseModulesDep(DEP), new Set());
  const names = r.load.map(moduleName);
  t.equal(new Set(names).size, names.length, 'no duplicates');
  const dep = parseModulesDep(DEP);
  for (const [i, n] of names.entries()) {
    for (const d of dep.modules.get(n)!.deps) t.ok(names.indexOf(d) < i, `${d} before ${n}`);
  }
  t.same(names.slice(0, 3), ['virtio', 'virtio_ring', 'fuse'], 'dependencies first, in the order they are met');
});

t.test('built-in modules are skipped; unknown ones fail with the chain that needs them', async (t) => {
  const builtin = parseModulesBuiltin('kernel/net/packet/af_packet.ko\nkernel/drivers/dax/dax.ko\n');
  const r = resolveModules(['af_packet', 'ext4'], parseModulesDep(DEP), builtin);
  t.same(r.builtin, ['af_packet']);
  t.notOk(r.load.some((p) => p.includes('af_packet')));
  const broken = parseModulesDep('kernel/a.ko: kernel/missing.ko\n');
  t.throws(() => resolveModules(['a'], broken, new Set()), { code: 'E_KERNEL_FEATURE', message: /missing.*needed by a/ });
});

t.test('the guest list covers the devices the runtime uses', async (t) => {
  for (const m of [
    'virtio_pci',
    'virtio_blk',
    'virtio_net',
    'virtio_console',
    'ext4',
    'crc32c_generic',
    'virtiofs',
    'nd_pmem',
    'virtio_scsi',
    'sd_mod',
    'virtio_rng',
  ]) {
    t.ok(GUEST_MODULES.includes(m), m);
  }
});
