import { cpus, totalmem } from 'node:os';
import type { SandboxConfig } from './types.js';
import { MAX_VCPUS } from './schema.js';

/**
 * Built-in defaults: a configuration that works with no file at all, on the embedded guest kit
 * (kernel/initrd/image left undefined for the caller to resolve) and on this project's test hosts.
 * Where a value differs from Kata's default it says why.
 */

const DEFAULT_QEMU_PATH = '/usr/bin/qemu-system-x86_64';
/** Debian 12 ships the C virtiofsd with QEMU 7.2 here. */
const DEFAULT_VIRTIOFSD_PATH = '/usr/lib/qemu/virtiofsd';
const DEFAULT_STATE_DIR = '/run/kata-resources';
/**
 * QEMU runs as root (it opens taps and /dev/kvm in the sandbox netns), so its syscalls are filtered:
 * the value Kata recommends (its default is off). No feature in use needs what it denies: no helper
 * is spawned (taps are opened by name, script=no), nothing changes uid, nothing sets CPU affinity.
 */
const DEFAULT_SECCOMP_SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';
/**
 * Where loadConfig looks when no file is named (and neither KATA_RESOURCES_CONFIG nor KATA_CONF_FILE
 * is set), first found wins: the administrator's file, then the packaged one (Kata's two places).
 */
export const DEFAULT_CONFIG_PATHS = ['/etc/kata-resources/configuration.toml', '/usr/share/defaults/kata-resources/configuration.toml'];

export function hostCores(): number {
  return Math.max(1, Math.min(cpus().length, MAX_VCPUS));
}

export function hostMemoryMiB(): number {
  return Math.floor(totalmem() / (1024 * 1024));
}

export function defaultConfig(): SandboxConfig {
  return {
    source: undefined,
    hypervisor: {
      kind: 'qemu',
      path: DEFAULT_QEMU_PATH,
      kernel: undefined,
      initrd: undefined,
      image: undefined,
      firmware: '',
      machineType: 'q35',
      rootfsType: 'ext4',
      kernelParams: [],
      // Kata: "pmu=off" on amd64. QEMU's own CPU model as is.
      cpuFeatures: '',
      entropySource: '/dev/urandom',
      // Kata's default file allows a few (enable_iommu, kernel_params, kernel_verity_params); none by default here.
      enableAnnotations: [],
      validHypervisorPaths: [],
      validVirtioFsDaemonPaths: [],
      vcpus: 1,
      // Kata: 0 = the host's cores.
      maxVcpus: hostCores(),
      // Kata: 2048. The embedded guest (busybox + node agent) is happy with 512, and guest RAM lives
      // in /dev/shm (shared for virtio-fs), which caps the total of all guests.
      memoryMiB: 512,
      // Kata: 0 = host RAM (address space for memory hotplug; costs nothing until used).
      maxMemoryMiB: hostMemoryMiB(),
      memorySlots: 10,
      sharedFs: 'virtio-fs',
      virtioFsDaemon: DEFAULT_VIRTIOFSD_PATH,
      virtioFsCache: 'auto',
      virtioFsCacheSizeMiB: 0,
      virtioFsQueueSize: 1024,
      virtioFsExtraArgs: [],
      // Kata: false. The image is an NVDIMM the guest mounts with DAX; true: a read-only virtio-blk disk.
      disableImageNvdimm: false,
      // Kata: virtio-scsi. virtio-blk needs no controller and gives the agent a PCI path.
      blockDeviceDriver: 'virtio-blk',
      // Kata's defaults: cache not set (QEMU's own), threads for aio.
      blockCache: { set: false, direct: false, noFlush: false, aio: 'threads' },
      // Kata has no NBD volumes; QEMU's defaults (0, 0) fail guest I/O at the first server restart.
      nbdReconnectDelaySec: 10,
      nbdOpenTimeoutSec: 5,
      // Kata: 0. Hotplug needs root ports on q35.
      pcieRootPorts: 4,
      disableVhostNet: false,
      networkQueues: 1,
      enableDebug: false,
      accel: 'auto',
      seccompSandbox: DEFAULT_SECCOMP_SANDBOX,
    },
    agent: { dialTimeoutMs: 45_000, enableDebug: false },
    runtime: {
      internetworkingModel: 'tcfilter',
      disableNewNetns: false,
      // Kata's default is false, with the VMM in /kata_overhead/<id> and only its vCPU threads in
      // the pod's cgroup; that split is not implemented here, so the default keeps the whole VM in
      // the pod's cgroup (Kata's recommended setting with a RuntimeClass overhead).
      sandboxCgroupOnly: true,
      enableDebug: false,
      stateDir: DEFAULT_STATE_DIR,
      volumeRoots: [],
      rwShareReachable: 'refuse',
    },
  };
}
