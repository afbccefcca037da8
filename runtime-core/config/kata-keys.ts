/**
 * Every key of Kata's configuration file, as its Go configuration code declares them
 * (kata-containers/kata-containers src/runtime/pkg/katautils/config.go at 7c6ba40, the `toml:`
 * tags of the hypervisor, agent, runtime and factory structs; a few keys of earlier releases are
 * kept so older files are not called typos). Keys this runtime applies are in schema.ts; for every
 * other Kata key this file says why it has no effect here, and which value this runtime behaves
 * like (`same`), so a file at Kata's defaults produces a short note rather than a list of typos.
 */

interface NotApplied {
  reason: string;
  /** Values that describe what this runtime does anyway (setting them changes nothing). */
  same?: readonly unknown[];
  /** Only matters when another setting turns its feature on (that one is reported): any value changes nothing. */
  dependent?: true;
}

const R = {
  vfio: 'VFIO passthrough is not supported',
  confidential: 'confidential guests (TDX, SEV-SNP) are not supported',
  hugepages: 'guest RAM is a shared file in /dev/shm (no hugepages, preallocation or virtio-mem)',
  rateLimit: 'rate limiting is not implemented',
  tracing: 'tracing (OpenTelemetry/Jaeger) is not implemented',
  jailer: 'no jailer: QEMU runs in the sandbox network namespace with -sandbox (seccomp)',
  firmware: 'the firmware is `firmware` (-bios): no UEFI firmware volume or pflash images',
  selinux: 'SELinux labelling of the VMM and the guest is not implemented',
  nineP: 'virtio-9p is not supported (shared_fs is virtio-fs or none)',
  vhostUserBlk: 'vhost-user block devices are not supported',
  numa: 'the guest has one NUMA node',
  iothreads: 'block devices run on the main loop (no iothreads)',
  sectors: 'block devices use the source’s sector sizes',
  remote: 'remote hypervisors are not supported',
  guestKit: 'the guest is the embedded guest kit (its own init and agent)',
  factory: 'VM templating and caching ([factory]) is not supported: every sandbox boots',
  containers: 'a setting of Kata’s container runtime (the containerd shim) that this runtime does not have',
  dump: 'guest memory dumps are not implemented',
  monitor: 'QMP is the supervisor’s own: no extra monitor socket',
  swap: 'guest swap is not implemented',
  debugConsole: '`kata-resources exec -t ID` is the debug console and always available',
  bridges: 'devices sit on PCIe root ports (pcie_root_port), not on PCI bridges',
  nesting: 'no nesting checks are made',
  pprof: 'no profiling endpoint',
} as const;

const off = [false, 0, '', []] as const;

/** [hypervisor.qemu] keys of Kata that are not applied here. */
const HYPERVISOR: Record<string, NotApplied> = {
  jailer_path: { reason: R.jailer, same: [''] },
  valid_jailer_paths: { reason: R.jailer, same: off, dependent: true },
  firmware_volume: { reason: R.firmware, same: [''] },
  pflashes: { reason: R.firmware, same: [[]] },
  machine_accelerators: { reason: 'the machine gets only the accelerator (accel) and the NVDIMM switch', same: [''] },
  kernel_verity_params: { reason: R.guestKit, same: [''] },
  tdx_quote_generation_service_socket_port: { reason: R.confidential, same: [0] },
  confidential_guest: { reason: R.confidential, same: [false] },
  sev_snp_guest: { reason: R.confidential, same: [false] },
  snp_id_block: { reason: R.confidential, same: [''] },
  snp_id_auth: { reason: R.confidential, same: [''] },
  snp_guest_policy: { reason: R.confidential, dependent: true },
  measurement_algo: { reason: R.confidential, same: [''] },
  guest_extension_images: { reason: R.guestKit, same: [[]] },
  vhost_user_store_path: { reason: R.vhostUserBlk, dependent: true },
  valid_vhost_user_store_paths: { reason: R.vhostUserBlk, dependent: true },
  enable_vhost_user_store: { reason: R.vhostUserBlk, same: [false] },
  vhost_user_reconnect_timeout_sec: { reason: R.vhostUserBlk, same: [0] },
  guest_hook_path: { reason: 'OCI hooks in the guest are not run', same: [''] },
  guest_memory_dump_path: { reason: R.dump, same: [''] },
  guest_memory_dump_paging: { reason: R.dump, same: [false] },
  remote_hypervisor_socket: { reason: R.remote, same: [''] },
  remote_hypervisor_timeout: { reason: R.remote, same: [0] },
  valid_entropy_sources: {
    reason: 'entropy_source is not taken from annotations here, so there is nothing to allow-list',
    dependent: true,
  },
  rx_rate_limiter_max_rate: { reason: R.rateLimit, same: [0] },
  tx_rate_limiter_max_rate: { reason: R.rateLimit, same: [0] },
  disk_rate_limiter_bw_max_rate: { reason: R.rateLimit, same: [0] },
  disk_rate_limiter_bw_one_time_burst: { reason: R.rateLimit, same: [0] },
  disk_rate_limiter_ops_max_rate: { reason: R.rateLimit, same: [0] },
  disk_rate_limiter_ops_one_time_burst: { reason: R.rateLimit, same: [0] },
  net_rate_limiter_bw_max_rate: { reason: R.rateLimit, same: [0] },
  net_rate_limiter_bw_one_time_burst: { reason: R.rateLimit, same: [0] },
  net_rate_limiter_ops_max_rate: { reason: R.rateLimit, same: [0] },
  net_rate_limiter_ops_one_time_burst: { reason: R.rateLimit, same: [0] },
  memory_offset: { reason: R.hugepages, same: [0] },
  enable_virtio_mem: { reason: R.hugepages, same: [false] },
  enable_mem_prealloc: { reason: R.hugepages, same: [false] },
  reclaim_guest_freed_memory: { reason: 'no virtio-balloon device', same: [false] },
  enable_hugepages: { reason: R.hugepages, same: [false] },
  file_mem_backend: { reason: R.hugepages, same: ['', '/dev/shm'] },
  valid_file_mem_backends: { reason: R.hugepages, dependent: true },
  hypervisor_loglevel: { reason: 'QEMU has no log level; enable_debug shows the guest kernel’s messages', same: [0] },
  default_bridges: { reason: R.bridges, dependent: true },
  msize_9p: { reason: R.nineP, dependent: true },
  block_device_logical_sector_size: { reason: R.sectors, same: [0] },
  block_device_physical_sector_size: { reason: R.sectors, same: [0] },
  enable_iothreads: { reason: R.iothreads, same: [false] },
  indep_iothreads: { reason: R.iothreads, same: [0] },
  enable_iommu: { reason: 'no virtual IOMMU', same: [false] },
  enable_iommu_platform: { reason: 'no virtual IOMMU', same: [false] },
  enable_numa: { reason: R.numa, same: [false] },
  numa_mapping: { reason: R.numa, same: [[]] },
  disable_nesting_checks: { reason: R.nesting, same: [false, true] },
  hot_plug_vfio: { reason: R.vfio, same: ['no-port', ''] },
  cold_plug_vfio: { reason: R.vfio, same: ['no-port', ''] },
  pcie_switch_port: { reason: R.vfio, same: [0] },
  enable_guest_swap: { reason: R.swap, same: [false] },
  rootless: { reason: 'QEMU runs as root (it opens taps and /dev/kvm in the sandbox namespace)', same: [false] },
  disable_seccomp: { reason: 'virtiofsd keeps its seccomp filter; QEMU’s is seccompsandbox', same: [false] },
  disable_selinux: { reason: R.selinux, same: [false, true] },
  disable_guest_selinux: { reason: R.selinux, same: [false, true] },
  use_legacy_serial: { reason: 'the console is always the legacy serial port (ttyS0)', same: [false, true] },
  extra_monitor_socket: { reason: R.monitor, same: [''] },
  disable_block_device_use: {
    reason: 'container root filesystems are shared over virtio-fs (a block-device rootfs is not implemented)',
    same: [true],
  },
  hotplug_vfio_on_root_bus: { reason: R.vfio, same: [false] },
  enable_entropy: { reason: 'the guest always has a virtio-rng device (entropy_source)', same: [false, true] },
};

const AGENT: Record<string, NotApplied> = {
  kernel_modules: { reason: 'the guest kit loads its own module set', same: [[]] },
  enable_tracing: { reason: R.tracing, same: [false] },
  debug_console_enabled: { reason: R.debugConsole, same: [false, true] },
  cdh_api_timeout: { reason: R.confidential, dependent: true },
  launch_process_timeout: { reason: R.containers, dependent: true },
  visible_cdi_devices: { reason: 'CDI devices are not supported', same: [false] },
  container_pipe_size: { reason: R.containers, same: [0] },
};

const RUNTIME: Record<string, NotApplied> = {
  jaeger_endpoint: { reason: R.tracing, same: [''] },
  jaeger_user: { reason: R.tracing, same: [''] },
  jaeger_password: { reason: R.tracing, same: [''] },
  enable_tracing: { reason: R.tracing, same: [false] },
  vfio_mode: { reason: R.vfio, same: ['guest-kernel', ''] },
  guest_selinux_label: { reason: R.selinux, same: [''] },
  sandbox_bind_mounts: { reason: 'host directories are shared on request (sandbox share), not at boot', same: [[]] },
  experimental: { reason: 'there are no experimental features', same: [[]] },
  disable_guest_seccomp: { reason: R.containers, same: [true, false] },
  enable_vcpus_pinning: { reason: 'vCPU threads are not pinned', same: [false] },
  static_sandbox_resource_mgmt: {
    reason: 'resources are always static here (the VM is sized at boot from default_vcpus/default_memory)',
    same: [false, true],
  },
  enable_pprof: { reason: R.pprof, same: [false] },
  disable_guest_empty_dir: { reason: R.containers, same: [true, false] },
  emptydir_mode: { reason: R.containers, same: ['shared-fs', ''] },
  create_container_timeout: { reason: R.containers, dependent: true },
  dan_conf: { reason: 'Directly Attachable Network configuration is not supported', dependent: true },
  experimental_force_guest_pull: { reason: R.containers, same: [false] },
  pod_resource_api_sock: { reason: R.containers, same: [''] },
  kubelet_root_dir: { reason: R.containers, dependent: true },
};

const FACTORY: Record<string, NotApplied> = {
  enable_template: { reason: R.factory, same: [false] },
  template_path: { reason: R.factory, dependent: true },
  vm_cache_number: { reason: R.factory, same: [0] },
  vm_cache_endpoint: { reason: R.factory, dependent: true },
};

const TABLES: Record<string, Record<string, NotApplied>> = {
  'hypervisor.qemu': HYPERVISOR,
  'agent.kata': AGENT,
  runtime: RUNTIME,
  factory: FACTORY,
};

/** Why a Kata key (table + name) has no effect here; undefined when Kata has no such key. */
export function notApplied(table: string, key: string): NotApplied | undefined {
  return TABLES[table]?.[key];
}

/** True when `value` is one this runtime behaves like for that key (changing nothing). */
export function changesNothing(n: NotApplied, value: unknown): boolean {
  if (n.dependent) return true;
  const same = n.same ?? [];
  return same.some((s) => JSON.stringify(s) === JSON.stringify(value));
}
