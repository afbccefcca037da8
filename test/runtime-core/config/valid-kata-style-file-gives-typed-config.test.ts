import t from 'tap';
import { parseConfig, loadConfig } from '../../../runtime-core/config/load-config.js';
import { capturingLogger, tempDir, writeFile } from '../../helpers/runtime-core.js';

t.test('a full Kata-style file maps every key to the typed config', async (t) => {
  const dir = tempDir(t);
  writeFile(dir, 'vmlinux', 'kernel');
  writeFile(dir, 'initrd.img', 'initrd');
  writeFile(dir, 'rootfs.img', 'image');
  writeFile(dir, 'qboot.rom', 'firmware');
  const file = writeFile(
    dir,
    'configuration.toml',
    `
[hypervisor.qemu]
path = "/usr/bin/qemu-system-x86_64"
kernel = "vmlinux"
initrd = "${dir}/initrd.img"
image = "rootfs.img"
firmware = "qboot.rom"
machine_type = "q35"
rootfs_type = "xfs"
cpu_features = " pmu=off, +x2apic ,"
entropy_source = "/dev/random"
enable_annotations = ["default_vcpus", "kernel_params"]
valid_hypervisor_paths = ["/usr/bin/qemu-*"]
valid_virtio_fs_daemon_paths = ["/usr/lib/qemu/virtiofsd"]
kernel_params = "  quiet   loglevel=3 "
default_vcpus = 2
default_maxvcpus = 2
default_memory = 1024
default_maxmemory = 4096
memory_slots = 4
shared_fs = "virtio-fs"
virtio_fs_daemon = "/usr/lib/qemu/virtiofsd"
virtio_fs_cache = "never"
virtio_fs_cache_size = 0
virtio_fs_queue_size = 512
virtio_fs_extra_args = ["--thread-pool-size=1"]
disable_image_nvdimm = false
block_device_driver = "virtio-scsi"
block_device_cache_set = true
block_device_cache_direct = true
block_device_cache_noflush = false
block_device_aio = "io_uring"
block_device_nbd_reconnect_delay = 30
block_device_nbd_open_timeout = 0
pcie_root_port = 6
disable_vhost_net = true
network_queues = 2
enable_debug = true
accel = "tcg"
seccompsandbox = "on,spawn=deny"

[agent.kata]
dial_timeout = 30
enable_debug = true

[runtime]
internetworking_model = "macvtap"
disable_new_netns = false
enable_debug = true
state_dir = "/run/krt-state"
volume_roots = ["/var/lib/krt-volumes", "/srv/krt"]
rw_share_reachable = "allow"
sandbox_cgroup_only = false
`,
  );
  const { log, lines } = capturingLogger();
  const cfg = loadConfig(file, { log });
  t.equal(cfg.source, file);
  t.same(
    cfg.hypervisor,
    {
      kind: 'qemu',
      path: '/usr/bin/qemu-system-x86_64',
      kernel: `${dir}/vmlinux`,
      initrd: `${dir}/initrd.img`,
      image: `${dir}/rootfs.img`,
      firmware: `${dir}/qboot.rom`,
      machineType: 'q35',
      rootfsType: 'xfs',
      cpuFeatures: 'pmu=off,+x2apic',
      entropySource: '/dev/random',
      enableAnnotations: ['default_vcpus', 'kernel_params'],
      validHypervisorPaths: ['/usr/bin/qemu-*'],
      validVirtioFsDaemonPaths: ['/usr/lib/qemu/virtiofsd'],
      kernelParams: ['quiet', 'loglevel=3'],
      vcpus: 2,
      maxVcpus: 2,
      memoryMiB: 1024,
      maxMemoryMiB: 4096,
      memorySlots: 4,
      sharedFs: 'virtio-fs',
      virtioFsDaemon: '/usr/lib/qemu/virtiofsd',
      virtioFsCache: 'never',
      virtioFsCacheSizeMiB: 0,
      virtioFsQueueSize: 512,
      virtioFsExtraArgs: ['--thread-pool-size=1'],
      disableImageNvdimm: false,
      blockDeviceDriver: 'virtio-scsi',
      blockCache: { set: true, direct: true, noFlush: false, aio: 'io_uring' },
      nbdReconnectDelaySec: 30,
      nbdOpenTimeoutSec: 0,
      pcieRootPorts: 6,
      disableVhostNet: true,
      networkQueues: 2,
      enableDebug: true,
      accel: 'tcg',
      seccompSandbox: 'on,spawn=deny',
    },
    "relative kernel/image paths are anchored at the file's directory",
  );
  t.same(cfg.agent, { dialTimeoutMs: 30_000, enableDebug: true }, 'dial_timeout is seconds in the file');
  t.same(cfg.runtime, {
    internetworkingModel: 'macvtap',
    disableNewNetns: false,
    enableDebug: true,
    stateDir: '/run/krt-state',
    volumeRoots: ['/var/lib/krt-volumes', '/srv/krt'],
    rwShareReachable: 'allow',
    sandboxCgroupOnly: false,
  });
  t.same(
    lines.filter((l) => l.level >= 40),
    [],
    'no warnings for a file with known keys only',
  );
});

t.test('zero vCPU/max values mean "the default", as in Kata', async (t) => {
  const cfg = parseConfig('[hypervisor.qemu]\ndefault_vcpus = 0\ndefault_maxvcpus = 0\ndefault_maxmemory = 0\n', '/x/c.toml', {
    checkFiles: false,
  });
  t.equal(cfg.hypervisor.vcpus, 1);
  t.ok(cfg.hypervisor.maxVcpus >= 1, 'maxvcpus 0 = host cores');
  t.ok(cfg.hypervisor.maxMemoryMiB >= cfg.hypervisor.memoryMiB, 'maxmemory 0 = host RAM');
});

t.test('disable_new_netns with internetworking_model = "none" is accepted', async (t) => {
  const cfg = parseConfig('[runtime]\ninternetworking_model = "none"\ndisable_new_netns = true\n', '/x/c.toml');
  t.equal(cfg.runtime.disableNewNetns, true);
  t.equal(cfg.runtime.internetworkingModel, 'none');
});
