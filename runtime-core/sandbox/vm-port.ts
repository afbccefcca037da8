import type { DeviceSpec } from '../../host/device-specs.js';
import type { Logger } from '../../host/log.js';
import type { NetnsRef } from '../../host/netns.js';
import type { SandboxConfig } from '../config/types.js';
import type { Hypervisor, VmRecord } from '../hypervisor/types.js';

export type { VmRecord };

/** What the assembly asks of a hypervisor driver to start one VM. */
export interface VmStartRequest {
  sandboxId: string;
  config: SandboxConfig;
  /** The sandbox's private directory (sockets, console log). */
  runDir: string;
  netns: NetnsRef | undefined;
  kernel: string;
  initrd: string;
  /** Root filesystem image, attached read-only. */
  image: string;
  /** The guest kit's kernel parameters (the configuration's are appended by the driver). */
  kernelParams: string[];
  devices: DeviceSpec[];
  log: Logger;
}

/** A started VM: the hypervisor driver plus where its agent listens. */
export interface RunningVm {
  readonly hypervisor: Hypervisor;
  readonly pid: number;
  readonly agentSocket: string;
  record(): VmRecord;
  stop(): Promise<void>;
  on(event: 'exit', fn: (x: { code: number | null; signal: string | null; expected: boolean }) => void): void;
}

/** A hypervisor driver as the assembly uses it; tests substitute a failing one. */
export interface VmDriver {
  start(req: VmStartRequest): Promise<RunningVm>;
  /** Clean a VM known only from its record (the supervisor died). */
  recover(rec: VmRecord, log: Logger): Promise<void>;
}
