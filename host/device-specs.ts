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

export interface BlockSpec {
  kind: 'block';
  id: string;
  path: string;
  readonly: boolean;
  driver: 'virtio-blk' | 'virtio-scsi' | 'nvdimm';
  format: 'raw' | 'qcow2';
}

export type DeviceSpec = NetTapSpec | NetMacvtapSpec | NetVhostUserSpec | VfioSpec | FsVhostUserSpec | BlockSpec;
