/**
 * What each hypervisor can do, as this runtime can use it. Config validation (config/rules.ts)
 * refuses a configuration that asks for something the chosen hypervisor cannot do, before anything
 * starts. Only QEMU has a driver; the Cloud Hypervisor and Firecracker rows are declared from their
 * published APIs (OpenAPI/Swagger definitions, kept in the project's anchors) so that the table, and
 * the refusals, are ready when a driver comes. `evidence` names, per capability, the API text that
 * backs the row (a test checks that each piece of evidence is present in the definition file).
 */

export type HypervisorKind = 'qemu' | 'cloud-hypervisor' | 'firecracker';

export interface HypervisorCapabilities {
  kind: HypervisorKind;
  /** This runtime has a driver for it. */
  driver: boolean;
  /** Add a network device to a running VM. */
  netHotplug: boolean;
  /** Remove a network device from a running VM. */
  netHotUnplug: boolean;
  /** Add a block device to a running VM. */
  blockHotplug: boolean;
  blockHotUnplug: boolean;
  /** Multi-queue virtio-net (network_queues > 1). */
  multiqueue: boolean;
  /** vhost-user-fs device (virtio-fs with an external virtiofsd). */
  vhostUserFs: boolean;
  /** DAX window for virtio-fs (virtio_fs_cache_size > 0). */
  virtioFsDax: boolean;
  /** vhost-user network backend. */
  vhostUserNet: boolean;
  /** Tap given to the VMM as an already open fd (macvtap) at boot. */
  tapFdColdplug: boolean;
  /**
   * Tap given as an fd to a running VM. Every VMM takes it as SCM_RIGHTS ancillary data on its control
   * socket (QEMU's getfd, Cloud Hypervisor's add-net with fds), which Node's sockets cannot send: false
   * for all of them as this runtime can use them.
   */
  tapFdHotplug: boolean;
  /** How the host reaches the guest agent: a virtio-serial port's chardev (QEMU) or hybrid vsock (Cloud Hypervisor, Firecracker). */
  agentTransport: 'virtio-serial' | 'hybrid-vsock';
  /** ACPI NVDIMM for the guest image (disable_image_nvdimm = false). */
  nvdimm: boolean;
  /** virtio-pmem devices. */
  virtioPmem: boolean;
  /** Block device drivers the guest can be given. */
  blockDrivers: readonly string[];
  /** Where the API facts come from (anchor file name), and the text backing each capability. */
  source?: string;
  evidence?: Partial<Record<keyof HypervisorCapabilities, readonly string[]>>;
}

export const CAPABILITIES: Readonly<Record<HypervisorKind, HypervisorCapabilities>> = {
  qemu: {
    kind: 'qemu',
    driver: true,
    netHotplug: true,
    netHotUnplug: true,
    blockHotplug: true,
    blockHotUnplug: true,
    multiqueue: true,
    vhostUserFs: true,
    // Stock QEMU has no cache-size property on vhost-user-fs-pci (only the out-of-tree virtio-fs branch).
    virtioFsDax: false,
    vhostUserNet: true,
    tapFdColdplug: true,
    tapFdHotplug: false,
    agentTransport: 'virtio-serial',
    nvdimm: true,
    virtioPmem: true,
    blockDrivers: ['virtio-blk', 'virtio-scsi'],
  },
  'cloud-hypervisor': {
    kind: 'cloud-hypervisor',
    driver: false,
    netHotplug: true,
    netHotUnplug: true,
    blockHotplug: true,
    blockHotUnplug: true,
    multiqueue: true,
    vhostUserFs: true,
    virtioFsDax: false,
    vhostUserNet: true,
    tapFdColdplug: true,
    tapFdHotplug: false,
    agentTransport: 'hybrid-vsock',
    nvdimm: false,
    virtioPmem: true,
    blockDrivers: ['virtio-blk'],
    source: 'cloud-hypervisor.yaml',
    evidence: {
      netHotplug: ['/vm.add-net:'],
      netHotUnplug: ['/vm.remove-device:'],
      blockHotplug: ['/vm.add-disk:'],
      blockHotUnplug: ['/vm.remove-device:'],
      multiqueue: ['num_queues:'],
      vhostUserFs: ['/vm.add-fs:', 'FsConfig:'],
      vhostUserNet: ['vhost_user:', 'vhost_socket:'],
      virtioPmem: ['/vm.add-pmem:', 'PmemConfig:'],
      agentTransport: ['/vm.add-vsock:', 'VsockConfig:'],
    },
  },
  firecracker: {
    kind: 'firecracker',
    driver: false,
    // Network interfaces and drives are created before boot only; a drive's backing path can be
    // patched after boot (Kata emulates block hotplug with placeholder drives), which is not hotplug.
    netHotplug: false,
    netHotUnplug: false,
    blockHotplug: false,
    blockHotUnplug: false,
    multiqueue: false,
    vhostUserFs: false,
    virtioFsDax: false,
    vhostUserNet: false,
    tapFdColdplug: false,
    tapFdHotplug: false,
    agentTransport: 'hybrid-vsock',
    nvdimm: false,
    virtioPmem: true,
    blockDrivers: ['virtio-mmio'],
    source: 'firecracker.yaml',
    evidence: {
      netHotplug: ['/network-interfaces/{iface_id}:', 'Creates a network interface. Pre-boot only.'],
      blockHotplug: ['/drives/{drive_id}:', 'Creates or updates a drive. Pre-boot only.'],
      virtioPmem: ['/pmem/{id}:', 'Creates or updates a pmem device. Pre-boot only.'],
      agentTransport: ['/vsock:', 'Creates/updates a vsock device. Pre-boot only.'],
      tapFdColdplug: ['host_dev_name'],
    },
  },
};

export function capabilitiesOf(kind: HypervisorKind): HypervisorCapabilities {
  return CAPABILITIES[kind];
}
