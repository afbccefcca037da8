import type { EventEmitter } from 'node:events';
import type { DaemonRecord } from '../../host/daemon.js';
import type { DeviceSpec } from '../../host/device-specs.js';
import type { Logger } from '../../host/log.js';
import type { NetnsRef } from '../../host/netns.js';
import type { SandboxConfig } from '../config/types.js';

/** What the assembly needs of a hypervisor driver (the QEMU driver implements it; see qemu-vm.ts). */
export interface VmStartRequest {
  sandboxId: string;
  config: SandboxConfig;
  /** The sandbox's private directory (sockets, console log, memory backend name). */
  runDir: string;
  netns: NetnsRef | undefined;
  kernel: string;
  initrd: string;
  /** Root filesystem image, attached read-only. */
  image: string;
  kernelParams: string[];
  devices: DeviceSpec[];
  log: Logger;
}

export interface RunningVm extends EventEmitter<{ exit: [{ code: number | null; signal: string | null; expected: boolean }] }> {
  readonly pid: number;
  /** Path of the unix socket of the agent's virtserialport. */
  readonly agentSocket: string;
  /** Everything to find and clean the VM without this object (persisted). */
  record(): VmRecord;
  /** QMP quit, then SIGKILL after a grace period; harmless when already stopped. */
  stop(): Promise<void>;
}

export interface VmRecord {
  daemon: DaemonRecord;
  /** Files the VM made that outlive it unless removed (sockets, memory backend, console log). */
  files: string[];
  accel: string;
}

export interface VmDriver {
  start(req: VmStartRequest): Promise<RunningVm>;
  /** Clean a VM known only from its record (the supervisor died). */
  recover(rec: VmRecord, log: Logger): Promise<void>;
}
