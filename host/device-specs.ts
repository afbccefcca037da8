/**
 * Hypervisor device specs: plain data that plugins emit and each hypervisor driver turns into its
 * own form (QEMU arguments or QMP commands, Cloud Hypervisor and Firecracker API bodies).
 */
export interface NetTapSpec {
  kind: 'net-tap';
  /** Unique id within the sandbox (QEMU netdev/device ids derive from it). */
  id: string;
  /** Tap interface name inside the sandbox netns (the VMM runs in that netns and opens it by name). */
  ifname: string;
  /** Guest MAC. */
  mac: string;
  mtu: number;
  queues: number;
  /** Use vhost-net when the host has /dev/vhost-net. */
  vhost: boolean;
}

export interface NetMacvtapSpec {
  kind: 'net-macvtap';
  id: string;
  /** A private character-device node for this macvtap (never the global /dev/tapN: it collides across netns). */
  devPath: string;
  ifname: string;
  mac: string;
  mtu: number;
  queues: number;
  vhost: boolean;
}

export interface NetVhostUserSpec {
  kind: 'net-vhost-user';
  id: string;
  socket: string;
  mac: string;
  queues: number;
}

export interface VfioSpec {
  kind: 'vfio';
  id: string;
  /** PCI address, e.g. 0000:3b:00.1. */
  bdf: string;
  /** Guest MAC to report for a network function. */
  mac?: string;
}

export interface FsVhostUserSpec {
  kind: 'fs-vhost-user';
  id: string;
  socket: string;
  /** Mount tag the guest uses (Kata: "kataShared"). */
  tag: string;
  queueSize: number;
}

/** Where a block device's data is: a regular file, a host block device, or an NBD export. */
export type BlockSource =
  | { kind: 'file'; path: string }
  | { kind: 'host-device'; path: string }
  | {
      kind: 'nbd';
      server: { type: 'unix'; path: string } | { type: 'inet'; host: string; port: number };
      export: string;
      /** Seconds the VMM keeps retrying a lost connection before failing I/O (0 = never reconnect). */
      reconnectDelaySec?: number;
      /** Seconds the first connection may take. */
      openTimeoutSec?: number;
    };

/** Kata's block_device_cache_* and block_device_aio. */
export interface BlockCache {
  /** O_DIRECT on the host (cache.direct). */
  direct: boolean;
  /** Ignore flush requests (cache.no-flush). */
  noFlush: boolean;
  /** Cache mode is set at all (Kata's block_device_cache_set; false = the VMM's default). */
  set: boolean;
  aio?: 'threads' | 'native' | 'io_uring';
}

export interface BlockSpec {
  kind: 'block';
  id: string;
  source: BlockSource;
  readonly: boolean;
  driver: 'virtio-blk' | 'virtio-scsi';
  format: 'raw' | 'qcow2';
  cache?: BlockCache;
}

/** A persistent-memory device mapped from a host file (the DAX guest image; Kata's NVDIMM rootfs). */
export interface PmemSpec {
  kind: 'pmem';
  id: string;
  path: string;
  readonly: boolean;
  /** Writes never reach the file (Cloud Hypervisor discard_writes; QEMU: a read-only backend). */
  discardWrites?: boolean;
}

export type DeviceSpec = NetTapSpec | NetMacvtapSpec | NetVhostUserSpec | VfioSpec | FsVhostUserSpec | BlockSpec | PmemSpec;

/** Where a hypervisor put a device, as the guest agent needs it (HotplugResult of a driver). */
export interface DevicePlacement {
  /** The DeviceSpec id. */
  id: string;
  /** Kata PCI path for the agent's devicePath / Storage source, e.g. "04/00". */
  guestPciPath?: string;
  /** virtio-scsi "scsi-id:lun" for a Storage source. */
  scsiAddr?: string;
}
