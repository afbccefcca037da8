import type { GuestDescriptors } from './agent-types.js';
import type { DevicePlacement, DeviceSpec } from './device-specs.js';
import type { Logger } from './log.js';
import type { Netlink } from './netlink.js';
import type { NetnsRef } from './netns.js';
import type { Sysfs } from './sysfs.js';

/**
 * What every resource plugin is given. Tests point a plugin at namespaces and temp dirs of their own
 * by building a context.
 */
export interface PluginContext {
  sandboxId: string;
  /** The sandbox's network namespace; undefined = the caller's own. */
  netns: NetnsRef | undefined;
  log: Logger;
  netlink: Netlink;
  sysfs: Sysfs;
  /** A private directory of this sandbox for files a plugin makes (device nodes, sockets). */
  runDir: string;
  /** Test hook: called before each named step; throwing there simulates a failure at that step. */
  faults?: FaultHook;
}

export type FaultHook = (step: string) => void | Promise<void>;

export async function checkpoint(ctx: PluginContext, step: string): Promise<void> {
  if (ctx.faults) await ctx.faults(step);
}

/** What attach returns: enough to undo it, and what the VMM and the guest need. */
export interface Attached<R = Record<string, unknown>> {
  /** What was attached, e.g. "net-virtual", "virtiofs" (descriptive; the journal keys records by plugin kind). */
  kind: string;
  /** Host resources created (JSON-serialisable: it is persisted as sandbox state). */
  resources: R;
  devices: DeviceSpec[];
  guest: GuestDescriptors;
}

/**
 * A sandbox resource: a typed config in; host resources, hypervisor device specs and guest
 * descriptors out (Attached); and an exact inverse.
 *
 * - attach undoes its own finished steps when a later one fails.
 * - detach is the inverse for a resource this plugin object attached (it may use live objects,
 *   e.g. a daemon it started); idempotent, tolerant of things already gone.
 * - recover undoes a resource from its journal record alone (the process that attached it is gone);
 *   it must not need anything but `attached` and the context.
 * - sweep (optional) cleans what an attach may have left when it was interrupted before its result
 *   was journalled: only the config (the journalled intent) is known then, so it removes what the
 *   plugin's naming conventions prove is its own, nothing else.
 * - complete (optional, hotplug): fill the guest descriptors from where the hypervisor placed the
 *   device (a PCI path for the agent's devicePath / Storage source, a SCSI address).
 */
export interface ResourcePlugin<K extends string, C, R> {
  readonly kind: K;
  attach(ctx: PluginContext, config: C): Promise<Attached<R>>;
  detach(ctx: PluginContext, attached: Attached<R>): Promise<void>;
  recover(ctx: PluginContext, attached: Attached<R>): Promise<void>;
  sweep?(ctx: PluginContext, config: C): Promise<void>;
  complete?(attached: Attached<R>, placed: DevicePlacement): Attached<R>;
}
