import t from 'tap';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../../../host/log.js';
import { ensureGuestKit, guestKitDir } from '../../../runtime-core/guest-kit/index.js';
import {
  ensureBuiltKernel,
  kernelBuildHash,
  kernelBuildInputs,
  kernelFragmentPath,
  parseKernelConfig,
  unmetOptions,
} from '../../../runtime-core/guest-kit/kernel-build.js';
import { hasPvhNote } from '../../../runtime-core/guest-kit/kernel.js';
import { run } from '../../../host/exec.js';

/**
 * What the guest uses, written here apart from the fragment (a line dropped from the fragment
 * fails this test): PVH boot, the serial console, PCI hotplug of q35 root ports, every virtio
 * device the QEMU driver plugs, NVDIMM/DAX for the root image, the file systems the agent mounts,
 * and what runc needs.
 */
const NEEDED = [
  'PVH',
  'SMP',
  'SERIAL_8250_CONSOLE',
  'BLK_DEV_INITRD',
  'DEVTMPFS',
  'ACPI',
  'PCI',
  'PCI_MSI',
  'HOTPLUG_PCI_ACPI',
  'HOTPLUG_PCI_PCIE',
  'VIRTIO_PCI',
  'VIRTIO_BLK',
  'VIRTIO_NET',
  'VIRTIO_CONSOLE',
  'HW_RANDOM_VIRTIO',
  'SCSI_VIRTIO',
  'BLK_DEV_SD',
  'MSDOS_PARTITION',
  'ACPI_NFIT',
  'LIBNVDIMM',
  'BLK_DEV_PMEM',
  'NVDIMM_PFN',
  'FS_DAX',
  'EXT4_FS',
  'TMPFS',
  'OVERLAY_FS',
  'FUSE_FS',
  'VIRTIO_FS',
  '9P_FS',
  'NET_9P_VIRTIO',
  'NAMESPACES',
  'PID_NS',
  'NET_NS',
  'IPC_NS',
  'UTS_NS',
  'USER_NS',
  'CGROUPS',
  'MEMCG',
  'CGROUP_PIDS',
  'CGROUP_BPF',
  'CPUSETS',
  'SECCOMP_FILTER',
  'POSIX_MQUEUE',
  'UNIX98_PTYS',
  'FUTEX',
  'EPOLL',
  'SIGNALFD',
  'EVENTFD',
  'TIMERFD',
  'INOTIFY_USER',
  'MULTIUSER',
  'UNIX',
  'INET',
  'IPV6',
  'PACKET',
  'NETFILTER',
  'VETH',
  'TUN',
];
/** What would slow the boot, need modules, or give the guest a device the host did not (sit0): absent. */
const ABSENT = ['MODULES', 'DEBUG_WX', 'MODULE_SIG', 'DEBUG_KERNEL_INITCALLS', 'KALLSYMS', 'IPV6_SIT'];

t.test('kconfig lines are read as set or unset; options kconfig dropped are named', async (t) => {
  const cfg = parseKernelConfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\nnoise\n');
  t.same(
    [...cfg],
    [
      ['CONFIG_A', 'y'],
      ['CONFIG_B', 'n'],
      ['CONFIG_C', '"x y"'],
    ],
  );
  t.same(unmetOptions('CONFIG_A=y\nCONFIG_B=n\nCONFIG_D=n\n', 'CONFIG_A=y\n'), [], 'unset and absent both satisfy =n');
  t.same(unmetOptions('CONFIG_A=y\nCONFIG_E=y\nCONFIG_B=n\n', 'CONFIG_A=m\nCONFIG_B=y\n'), [
    'CONFIG_A=y (got m)',
    'CONFIG_E=y (got n)',
    'CONFIG_B=n (got y)',
  ]);
});

t.test("the default kit's kernel is built from linux-source with the guest's drivers built in, then reused", async (t) => {
  const kit = await ensureGuestKit({ log: silentLogger(), onProgress: (m) => t.comment(`guest-kit: ${m}`) });
  t.equal(kit.kernelSource, 'built');
  t.equal(kit.kernelPackage, 'linux-source-6.1');
  t.match(kit.kernelVersion, /^6\.1\.\d+-kata-resources$/, 'uname -r names the source version and this build');
  t.ok(kit.pvh && (await hasPvhNote(kit.kernel)), 'the kit boots the vmlinux through its PVH note');

  const record = JSON.parse(await readFile(join(kit.dir, 'kit.json'), 'utf8'));
  const inputs = await kernelBuildInputs();
  const hash = kernelBuildHash(inputs);
  t.equal(record.inputs.kernel.build, hash, 'the kit names the kernel build of the current inputs (source version, fragment, compiler)');
  t.equal(inputs.fragment, await readFile(kernelFragmentPath(), 'utf8'));

  const kdir = join(guestKitDir(), `kernel-${hash}`);
  const config = await readFile(join(kdir, 'config'), 'utf8');
  const opts = parseKernelConfig(config);
  const missing = NEEDED.filter((o) => opts.get(`CONFIG_${o}`) !== 'y');
  t.same(missing, [], 'every option the guest needs is built in (=y)');
  const present = ABSENT.filter((o) => (opts.get(`CONFIG_${o}`) ?? 'n') !== 'n');
  t.same(present, [], 'no modules, no W+X check, no module signing, no initcall debugging');
  t.same(unmetOptions(inputs.fragment, config), [], 'every line of the fragment is in the .config');
  t.equal((await stat(kit.kernel)).size, (await stat(join(kdir, 'vmlinux'))).size, "the kit's vmlinux is the cached build");

  const cpio = await run('sh', ['-c', `cpio -it --quiet < '${kit.initrd}'`]);
  t.notOk(/\.ko$/m.test(cpio.stdout), 'the initramfs holds no kernel module');

  const mtime = (await stat(join(kdir, 'vmlinux'))).mtimeMs;
  const steps: string[] = [];
  const again = await ensureBuiltKernel(guestKitDir(), inputs, (m) => steps.push(m));
  t.equal(again.outcome, 'reused', 'a second ensure reuses the cached kernel');
  t.same(steps, [], 'without a build step');
  t.equal(again.vmlinux, join(kdir, 'vmlinux'));
  t.equal((await stat(again.vmlinux)).mtimeMs, mtime, 'the cached vmlinux is untouched');

  const other = await ensureBuiltKernel(guestKitDir(), { ...inputs, fragment: inputs.fragment }, (m) => steps.push(m));
  t.equal(other.hash, hash, 'equal inputs give the same kernel');
  t.not(kernelBuildHash({ ...inputs, fragment: `${inputs.fragment}CONFIG_X=y\n` }), hash, 'another fragment is another kernel');
  t.not(kernelBuildHash({ ...inputs, sourceVersion: `${inputs.sourceVersion}+1` }), hash, 'so is another source version');
});

t.test('KATA_GUEST_KERNEL=debian keeps the stock kernel with its modules in the initramfs', async (t) => {
  const kit = await ensureGuestKit({ kernel: 'debian', log: silentLogger(), onProgress: (m) => t.comment(`guest-kit: ${m}`) });
  t.equal(kit.kernelSource, 'debian');
  t.match(kit.kernelPackage, /^linux-image-/);
  const record = JSON.parse(await readFile(join(kit.dir, 'kit.json'), 'utf8'));
  const load: string[] = record.modules.load;
  t.ok(
    load.some((m) => m.endsWith('/ext4.ko')),
    'the initramfs carries ext4',
  );
  t.ok(load.findIndex((m) => m.endsWith('/jbd2.ko')) < load.findIndex((m) => m.endsWith('/ext4.ko')), 'jbd2 before ext4');
  const built = await ensureGuestKit({ log: silentLogger() });
  t.not(built.hash, kit.hash, 'the two kernels are two kits');
  t.equal(built.outcome, 'reused', 'and switching back reuses the built one');
});
