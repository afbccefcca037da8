import type { EventEmitter } from 'node:events';
import type { DaemonRecord } from '../../host/daemon.js';
import type { DeviceSpec } from '../../host/device-specs.js';
import type { Logger } from '../../host/log.js';
import type { NetnsRef } from '../../host/netns.js';
import type { QemuConfig } from '../config/types.js';
import type { HypervisorCapabilities, HypervisorKind } from './capabilities.js';

/**
 * What every hypervisor driver offers the sandbox assembly: start a VM from device specs (cold plug),
 * stop it, hot-plug and unplug devices, and say what it can do. Drivers turn the same plain-data
 * DeviceSpecs (host/device-specs.ts) into their own form (QEMU argv/QMP, Cloud Hypervisor and
 * Firecracker API bodies).
 */

export interface VmSpec {
  sandboxId: string;
  /** The hypervisor section of the sandbox configuration. */
  config: QemuConfig;
  /** Resolved guest kit paths (the configuration may leave them to the embedded kit). */
  kernel: string;
  initrd?: string;
  image?: string;
  /** Kernel parameters of the caller (e.g. the guest kit's); the configuration's come after. */
  kernelParams?: string[];
  devices: DeviceSpec[];
  /** The sandbox's private directory: control sockets and the console log go there. */
  runDir: string;
  /** The sandbox netns: the VMM runs inside it, so taps are opened by name there. */
  netns?: NetnsRef;
  /** Turn on the guest agent's debug logs. */
  agentDebug?: boolean;
}

export interface VmStartOptions {
  log: Logger;
  /** Directory for the accelerator probe cache (e.g. the runtime's state dir). */
  accelCacheDir?: string;
  /** How long to wait for the VMM's control socket (default 10 s). */
  controlTimeoutMs?: number;
}

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when it followed stop(); false = the VMM died or the guest shut it down on its own. */
  expected: boolean;
}

export interface HotplugResult {
  /** The DeviceSpec id. */
  id: string;
  /** The hypervisor's device id. */
  deviceId: string;
  /** Kata PCI path for the agent's devicePath / Storage source, e.g. "04/00". */
  guestPciPath?: string;
  /** virtio-scsi "scsi-id:lun" for a Storage source. */
  scsiAddr?: string;
}

/** Enough to find and clean a VM after the process that started it is gone. */
export interface VmRecord {
  kind: HypervisorKind;
  daemon: DaemonRecord;
  accel: 'kvm' | 'tcg';
  /** Control and agent sockets, console log. */
  controlSocket: string;
  agentSocket: string;
  consoleLog: string;
  /** Files to remove once the VM is gone. */
  files: string[];
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
  capabilities(): HypervisorCapabilities;
  /** Start the VM with the spec's devices cold-plugged; resolves once the VMM's control channel is up. */
  start(spec: VmSpec, opts: VmStartOptions): Promise<void>;
  /** Stop the VM (graceful, then forced); harmless when it is not running. */
  stop(opts?: { graceMs?: number }): Promise<void>;
  /** Add a device to the running VM; a failure part-way leaves nothing behind. */
  hotplug(spec: DeviceSpec): Promise<HotplugResult>;
  /** Remove a device (hot-plugged or cold-plugged) by its DeviceSpec id. */
  unplug(id: string, opts?: UnplugOptions): Promise<void>;
  readonly running: boolean;
  record(): VmRecord;
}
