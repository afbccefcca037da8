import type { SchemaNode } from './schema.js';

/**
 * Keys of Kata's configuration-qemu.toml that this runtime reads no meaning from. A Kata file can
 * be given as is: these are reported as "Kata setting not used here" rather than as typos.
 */
const KATA_KEYS: Record<string, readonly string[]> = {
  'hypervisor.qemu': [
    'rootfs_type',
    'rootless',
    'enable_annotations',
    'valid_hypervisor_paths',
    'firmware',
    'firmware_volume',
    'machine_accelerators',
    'seccompsandbox',
    'cpu_features',
    'default_bridges',
    'memory_offset',
    'enable_virtio_mem',
    'valid_virtio_fs_daemon_paths',
    'block_device_aio',
    'block_device_cache_set',
    'block_device_cache_direct',
    'block_device_cache_noflush',
    'block_device_logical_sector_size',
    'block_device_physical_sector_size',
    'enable_iothreads',
    'indep_iothreads',
    'enable_mem_prealloc',
    'reclaim_guest_freed_memory',
    'enable_hugepages',
    'enable_vhost_user_store',
    'vhost_user_store_path',
    'enable_iommu',
    'enable_iommu_platform',
    'enable_numa',
    'numa_mapping',
    'valid_vhost_user_store_paths',
    'vhost_user_reconnect_timeout_sec',
    'pflashes',
    'extra_monitor_socket',
    'disable_nesting_checks',
    'msize_9p',
    'hot_plug_vfio',
    'cold_plug_vfio',
    'entropy_source',
    'valid_entropy_sources',
    'guest_hook_path',
    'rx_rate_limiter_max_rate',
    'tx_rate_limiter_max_rate',
    'guest_memory_dump_path',
    'guest_memory_dump_paging',
    'enable_guest_swap',
    'use_legacy_serial',
    'disable_selinux',
    'disable_guest_selinux',
    'valid_file_mem_backends',
    'file_mem_backend',
    'enable_entropy',
    'kernel_verity_params',
  ],
  'agent.kata': ['enable_tracing', 'kernel_modules', 'debug_console_enabled', 'cdh_api_timeout'],
  runtime: [
    'disable_guest_seccomp',
    'enable_vcpus_pinning',
    'guest_selinux_label',
    'enable_tracing',
    'jaeger_endpoint',
    'jaeger_user',
    'jaeger_password',
    'static_sandbox_resource_mgmt',
    'sandbox_bind_mounts',
    'vfio_mode',
    'disable_guest_empty_dir',
    'emptydir_mode',
    'experimental',
    'enable_pprof',
    'create_container_timeout',
    'dan_conf',
    'kubelet_root_dir',
    'pod_resource_api_sock',
  ],
};

export interface UnknownKey {
  /** Dotted key path, e.g. "hypervisor.qemu.rootless". */
  key: string;
  /** True when it is a Kata setting this runtime does not use (rather than an unknown name). */
  kata: boolean;
}

/**
 * Keys present in `value` that the schema does not describe, walking only into objects the schema
 * describes with `properties` (tables it leaves open, like [factory], are not walked).
 */
export function findUnknownKeys(value: unknown, schema: SchemaNode, prefix = ''): UnknownKey[] {
  const out: UnknownKey[] = [];
  if (schema.properties === undefined || value === null || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const sub = schema.properties[k];
    if (sub === undefined) {
      out.push({ key, kata: KATA_KEYS[prefix]?.includes(k) ?? false });
      continue;
    }
    out.push(...findUnknownKeys(v, sub, key));
  }
  return out;
}
