/**
 * JSON Schema of the configuration file, as it looks after TOML parsing (snake_case keys, Kata's
 * names). Types, enums and ranges are checked by ajv; unknown keys are NOT schema errors (they are
 * warnings, see unknown-keys.ts), so no object here sets additionalProperties.
 */

const bool = { type: 'boolean' } as const;
const str = { type: 'string' } as const;
const path = { type: 'string', minLength: 1 } as const;
const absPath = { type: 'string', pattern: '^/' } as const;

export const MAX_VCPUS = 240;
/** Kata's limits (config.go): larger values are clamped to them, with a warning. */
export const MAX_PCIE_ROOT_PORTS = 16;
/** Kata's vc.MinHypervisorMemory: below it Kata uses its default memory size. */
export const MIN_MEMORY_MIB = 256;
const MAX_NETWORK_QUEUES = 16;
const MAX_NBD_RECONNECT_DELAY_S = 3600;
/** blockdev-add waits this long at most for the first connection (its QMP deadline is raised to match). */
const MAX_NBD_OPEN_TIMEOUT_S = 300;
const strs = { type: 'array', items: str } as const;

/**
 * Values Kata accepts for a key and this runtime deliberately does not, with the reason (named in
 * the error instead of a bare "must be one of").
 */
export const REFUSED_VALUES: Record<string, Record<string, string>> = {
  'hypervisor.qemu.machine_type': {
    microvm: 'the guest needs PCIe root ports for hotplug and a virtio-serial agent channel, which microvm does not have',
    pc: 'i440fx has no PCIe root ports for hotplug',
    virt: 'an Arm machine; this runtime drives qemu-system-x86_64',
    's390-ccw-virtio': 'an s390x machine; this runtime drives qemu-system-x86_64',
    pseries: 'a POWER machine; this runtime drives qemu-system-x86_64',
  },
  'hypervisor.qemu.shared_fs': {
    'virtio-9p': 'only virtio-fs shares are implemented (the guest kit has no 9p client set up)',
    'virtio-fs-nydus': 'nydus image acceleration is not implemented',
  },
  'hypervisor.qemu.block_device_driver': {
    nvdimm: 'block volumes are virtio-blk or virtio-scsi; the guest image alone can be an NVDIMM (disable_image_nvdimm)',
    'virtio-mmio': 'q35 has no virtio-mmio transport here',
    'virtio-blk-ccw': 'an s390x transport',
  },
  'hypervisor.qemu.virtio_fs_queue_size': { '*': "QEMU's vhost-user-fs-pci takes a power of two from 64 to 1024" },
};

export const CONFIG_SCHEMA = {
  type: 'object',
  properties: {
    hypervisor: {
      type: 'object',
      properties: {
        qemu: {
          type: 'object',
          properties: {
            path,
            kernel: path,
            initrd: path,
            image: path,
            firmware: str,
            machine_type: { type: 'string', enum: ['q35'] },
            rootfs_type: { type: 'string', enum: ['ext4', 'xfs', 'erofs'] },
            kernel_params: str,
            cpu_features: str,
            entropy_source: str,
            enable_annotations: strs,
            valid_hypervisor_paths: strs,
            valid_virtio_fs_daemon_paths: strs,
            // Kata: float32 (fractional sizing); negative or above the host's CPUs = the host's CPUs.
            default_vcpus: { type: 'number' },
            default_maxvcpus: { type: 'integer', minimum: 0 },
            default_memory: { type: 'integer', minimum: 0, maximum: 16777216 },
            default_maxmemory: { type: 'integer', minimum: 0 },
            memory_slots: { type: 'integer', minimum: 0, maximum: 255 },
            shared_fs: { type: 'string', enum: ['virtio-fs', 'none'] },
            virtio_fs_daemon: path,
            virtio_fs_cache: { type: 'string', enum: ['never', 'metadata', 'auto', 'always'] },
            virtio_fs_cache_size: { type: 'integer', minimum: 0, maximum: 1048576 },
            virtio_fs_queue_size: { type: 'integer', enum: [64, 128, 256, 512, 1024] },
            virtio_fs_extra_args: strs,
            disable_image_nvdimm: bool,
            block_device_driver: { type: 'string', enum: ['virtio-blk', 'virtio-scsi'] },
            block_device_cache_set: bool,
            block_device_cache_direct: bool,
            block_device_cache_noflush: bool,
            block_device_aio: { type: 'string', enum: ['threads', 'native', 'io_uring'] },
            block_device_nbd_reconnect_delay: { type: 'integer', minimum: 0, maximum: MAX_NBD_RECONNECT_DELAY_S },
            block_device_nbd_open_timeout: { type: 'integer', minimum: 0, maximum: MAX_NBD_OPEN_TIMEOUT_S },
            pcie_root_port: { type: 'integer', minimum: 0 },
            disable_vhost_net: bool,
            network_queues: { type: 'integer', minimum: 1, maximum: MAX_NETWORK_QUEUES },
            enable_debug: bool,
            accel: { type: 'string', enum: ['auto', 'kvm', 'tcg'] },
            seccompsandbox: { type: 'string' },
          },
        },
      },
    },
    agent: {
      type: 'object',
      properties: {
        kata: {
          type: 'object',
          properties: {
            dial_timeout: { type: 'integer', minimum: 0, maximum: 3600 },
            enable_debug: bool,
          },
        },
      },
    },
    runtime: {
      type: 'object',
      properties: {
        internetworking_model: { type: 'string', enum: ['tcfilter', 'macvtap', 'none'] },
        disable_new_netns: bool,
        enable_debug: bool,
        state_dir: absPath,
        volume_roots: { type: 'array', items: absPath },
        rw_share_reachable: { type: 'string', enum: ['refuse', 'allow'] },
        sandbox_cgroup_only: bool,
      },
    },
  },
} as const;

/** What the raw file may contain (after a successful schema validation). */
export interface RawConfig {
  hypervisor?: {
    qemu?: {
      path?: string;
      kernel?: string;
      initrd?: string;
      image?: string;
      firmware?: string;
      machine_type?: 'q35';
      rootfs_type?: 'ext4' | 'xfs' | 'erofs';
      kernel_params?: string;
      cpu_features?: string;
      entropy_source?: string;
      enable_annotations?: string[];
      valid_hypervisor_paths?: string[];
      valid_virtio_fs_daemon_paths?: string[];
      default_vcpus?: number;
      default_maxvcpus?: number;
      default_memory?: number;
      default_maxmemory?: number;
      memory_slots?: number;
      shared_fs?: 'virtio-fs' | 'none';
      virtio_fs_daemon?: string;
      virtio_fs_cache?: 'never' | 'metadata' | 'auto' | 'always';
      virtio_fs_cache_size?: number;
      virtio_fs_queue_size?: number;
      virtio_fs_extra_args?: string[];
      disable_image_nvdimm?: boolean;
      block_device_driver?: 'virtio-blk' | 'virtio-scsi';
      block_device_cache_set?: boolean;
      block_device_cache_direct?: boolean;
      block_device_cache_noflush?: boolean;
      block_device_aio?: 'threads' | 'native' | 'io_uring';
      block_device_nbd_reconnect_delay?: number;
      block_device_nbd_open_timeout?: number;
      pcie_root_port?: number;
      disable_vhost_net?: boolean;
      network_queues?: number;
      enable_debug?: boolean;
      accel?: 'auto' | 'kvm' | 'tcg';
      seccompsandbox?: string;
    };
    [other: string]: unknown;
  };
  agent?: { kata?: { dial_timeout?: number; enable_debug?: boolean }; [other: string]: unknown };
  runtime?: {
    internetworking_model?: 'tcfilter' | 'macvtap' | 'none';
    disable_new_netns?: boolean;
    enable_debug?: boolean;
    state_dir?: string;
    volume_roots?: string[];
    rw_share_reachable?: 'refuse' | 'allow';
    sandbox_cgroup_only?: boolean;
  };
}

/** A schema node, loosely typed, for walking the schema. */
export interface SchemaNode {
  type?: string;
  properties?: Record<string, SchemaNode>;
  enum?: readonly unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  pattern?: string;
  items?: SchemaNode;
}
