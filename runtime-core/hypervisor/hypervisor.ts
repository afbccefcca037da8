/**
 * The one hypervisor contract. The sandbox assembly gives a driver generic VM resources (CPUs,
 * memory, kernel, the guest image and the device specs of host/device-specs.ts) plus a config typed
 * by the driver; a driver turns them into its own form (QEMU argv and QMP; Cloud Hypervisor and
 * Firecracker API bodies later) and says where the guest agent can be reached. No QEMU type appears
 * here: a new hypervisor is a folder under hypervisor/ with a driver implementing HypervisorDriver,
 * one entry in drivers.ts and one row in capabilities.ts.
 */
import type { EventEmitter } from 'node:events';
import type { DaemonRecord } from '../../host/daemon.js';
import type { BlockSpec, DevicePlacement, DeviceSpec, PmemSpec } from '../../host/device-specs.js';
import type { Logger } from '../../host/log.js';
import type { NetnsRef } from '../../host/netns.js';
import type { FaultHook } from '../../host/plugin.js';
import type { HypervisorCapabilities, HypervisorKind } from './capabilities.js';

/** What the VM is made of, whatever runs it. */
export interface VmResources {
  vcpus: number;
  maxVcpus: number;
  memoryMiB: number;
  maxMemoryMiB: number;
  /** Memory hotplug slots (0 = none). */
  memorySlots: number;
  kernel: string;
  initrd?: string;
  /** The guest image (rootfs): an NVDIMM/virtio-pmem device or a read-only block device. */
  image?: PmemSpec | BlockSpec;
  /** The whole guest kernel command line the caller wants (the guest kit's, then the configuration's). */
  kernelParams: string[];
  /** Cold-plugged devices. */
  devices: DeviceSpec[];
  /** How many devices may be hot-plugged later (QEMU: PCIe root ports). */
  hotplugSlots: number;
}

export interface VmSpec<D = unknown> {
  sandboxId: string;
  resources: VmResources;
  /** The driver's own configuration (QEMU: QemuConfig). */
  driverConfig: D;
  /** The sandbox's private directory: control sockets and the console log go there. */
  runDir: string;
  /** The sandbox netns: the VMM runs inside it, so taps are opened by name there. */
  netns?: NetnsRef;
}

export interface VmStartOptions {
  log: Logger;
  /** Directory for driver caches (QEMU: the accelerator probe). */
  cacheDir?: string;
  /** How long to wait for the VMM's control socket (default 10 s). */
  controlTimeoutMs?: number;
}

/** Where the guest agent listens, as seen from the host. */
export interface AgentEndpoint {
  /** A unix stream socket that is the agent's channel (QEMU: the virtio-serial port's chardev; hybrid vsock later). */
  kind: 'unix';
  path: string;
}

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when it followed stop(); false = the VMM died or the guest shut it down on its own. */
  expected: boolean;
}

/** Where a hot-plugged device went, and the hypervisor's id for it. */
export interface HotplugResult extends DevicePlacement {
  deviceId: string;
}

/** Enough to find and clean a VM after the process that started it is gone. */
export interface VmRecord {
  kind: HypervisorKind;
  daemon: DaemonRecord;
  agent: AgentEndpoint;
  consoleLog: string;
  /** Files to remove once the VM is gone (control and agent sockets). */
  files: string[];
  /** Driver facts for the status view and diagnostics (QEMU: the accelerator, the control socket). */
  details: Record<string, string | number | boolean>;
}

export interface UnplugOptions {
  /** How long to wait for the guest to release the device (default 10 s, as Kata). */
  timeoutMs?: number;
}

/** Events of a running VM: its exit, and the VMM's own events (QMP events for QEMU). */
export interface HypervisorEvents {
  exit: [VmExit];
  event: [{ event: string; data?: Record<string, unknown> }];
}

export interface Hypervisor extends EventEmitter<HypervisorEvents> {
  readonly kind: HypervisorKind;
  /** Start the VM with the spec's devices cold-plugged; resolves once the VMM's control channel is up. */
  start(spec: VmSpec, opts: VmStartOptions): Promise<void>;
  /** Stop the VM (graceful, then forced); harmless when it is not running. */
  stop(opts?: { graceMs?: number }): Promise<void>;
  /** Add a device to the running VM; a failure part-way leaves nothing behind. */
  hotplug(spec: DeviceSpec): Promise<HotplugResult>;
  /** Remove a device (hot-plugged or cold-plugged) by its DeviceSpec id. */
  unplug(id: string, opts?: UnplugOptions): Promise<void>;
  /** Where the guest agent can be reached (valid once start resolved). */
  agentEndpoint(): AgentEndpoint;
  readonly running: boolean;
  readonly pid: number | undefined;
  record(): VmRecord;
}

export interface HypervisorDriver {
  readonly kind: HypervisorKind;
  capabilities(): HypervisorCapabilities;
  create(opts?: { faults?: FaultHook }): Hypervisor;
  /** Clean a VM known only from its record (the process that started it died). */
  recover(rec: VmRecord, log: Logger): Promise<void>;
}
