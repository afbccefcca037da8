/**
 * The typed sandbox configuration the rest of the runtime uses. It is produced from a TOML file in
 * the style of Kata's configuration-qemu.toml (see schema.ts for the file's keys and
 * load-config.ts for the mapping); every field here has a value (defaults applied), except the guest
 * kit paths, where `undefined` means "use the embedded guest kit" (resolved by the caller).
 */

import type { BlockCache } from '../../host/device-specs.js';

type SharedFs = 'virtio-fs' | 'none';
type VirtioFsCache = 'never' | 'metadata' | 'auto' | 'always';
type BlockDeviceDriver = 'virtio-blk' | 'virtio-scsi';
export type AccelChoice = 'auto' | 'kvm' | 'tcg';
type InternetworkingModel = 'tcfilter' | 'macvtap' | 'none';

export interface QemuConfig {
  kind: 'qemu';
  /** QEMU binary (`path`). */
  path: string;
  /** Guest kernel; undefined = the embedded guest kit's. */
  kernel: string | undefined;
  initrd: string | undefined;
  /** Guest rootfs image; undefined = the embedded guest kit's. */
  image: string | undefined;
  /**
   * QEMU's -bios (Kata's `firmware`). "" = the fastest one QEMU ships: qboot when its data directory
   * has qboot.rom (no PCI option ROMs, boot menu or disk probing: under TCG about 0.9 s less than
   * SeaBIOS with this runtime's devices), else QEMU's default (SeaBIOS).
   */
  firmware: string;
  machineType: 'q35';
  /** Filesystem of the guest image (the kernel's rootfstype=). */
  rootfsType: 'ext4' | 'xfs' | 'erofs';
  /** Extra kernel parameters from the file (appended after the runtime's own, so they win). */
  kernelParams: string[];
  /** Appended to QEMU's -cpu model ("pmu=off" -> -cpu max,pmu=off); "" = none. */
  cpuFeatures: string;
  /** Host source of the guest's virtio-rng. */
  entropySource: string;
  /** Which io.katacontainers.config.hypervisor.* annotations may override this file (regular expressions on the suffix). */
  enableAnnotations: string[];
  /** Globs a `path` annotation must match (Kata's valid_hypervisor_paths). */
  validHypervisorPaths: string[];
  /** Globs a `virtio_fs_daemon` annotation must match. */
  validVirtioFsDaemonPaths: string[];
  vcpus: number;
  maxVcpus: number;
  memoryMiB: number;
  maxMemoryMiB: number;
  memorySlots: number;
  sharedFs: SharedFs;
  virtioFsDaemon: string;
  virtioFsCache: VirtioFsCache;
  /** DAX window in MiB (0 = off). */
  virtioFsCacheSizeMiB: number;
  virtioFsQueueSize: number;
  virtioFsExtraArgs: string[];
  disableImageNvdimm: boolean;
  blockDeviceDriver: BlockDeviceDriver;
  /** block_device_cache_set/direct/noflush and block_device_aio, as given to every block volume. */
  blockCache: BlockCache;
  /**
   * NBD volumes (QEMU's own NBD client): seconds a lost connection is retried with guest I/O paused
   * before requests fail (`block_device_nbd_reconnect_delay`; 0 = no reconnect), and seconds the
   * first connection may be retried (`block_device_nbd_open_timeout`; 0 = one try).
   */
  nbdReconnectDelaySec: number;
  nbdOpenTimeoutSec: number;
  /** Number of pcie-root-ports cold-plugged for hotplug. */
  pcieRootPorts: number;
  disableVhostNet: boolean;
  networkQueues: number;
  enableDebug: boolean;
  accel: AccelChoice;
  /** QEMU's -sandbox (seccomp) options; "" = no -sandbox (Kata's seccompsandbox). */
  seccompSandbox: string;
}

interface AgentConfig {
  /** How long to wait for the guest agent to answer after the VM started (`dial_timeout`, seconds in the file). */
  dialTimeoutMs: number;
  enableDebug: boolean;
}

interface RuntimeConfig {
  internetworkingModel: InternetworkingModel;
  disableNewNetns: boolean;
  /** The VM and its daemons in the pod's cgroup (Kata: false puts the VMM in /kata_overhead/<id>). */
  sandboxCgroupOnly: boolean;
  /** The supervisor logs at debug level (unless KATA_LOG_LEVEL says otherwise). */
  enableDebug: boolean;
  /** Root of per-sandbox state: `<stateDir>/sandboxes/<id>/state.json`. */
  stateDir: string;
  /** Share sources must lie inside one of these directories (`volume_roots`; empty = anywhere). */
  volumeRoots: string[];
  /** A read-write share of a directory other host users can reach: refused (default) or allowed with a warning. */
  rwShareReachable: 'refuse' | 'allow';
}

export interface SandboxConfig {
  /** The file the configuration came from; undefined = built-in defaults only. */
  source: string | undefined;
  hypervisor: QemuConfig;
  agent: AgentConfig;
  runtime: RuntimeConfig;
}
