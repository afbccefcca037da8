import type { GuestDescriptors } from './agent-types.js';
import type { DeviceSpec } from './device-specs.js';
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
  /** Plugin kind, e.g. "veth", "virtiofs". */
  kind: string;
  /** Host resources created (JSON-serialisable: it is persisted as sandbox state). */
  resources: R;
  devices: DeviceSpec[];
  guest: GuestDescriptors;
}

export interface ResourcePlugin<C, R = Record<string, unknown>> {
  readonly kind: string;
  attach(ctx: PluginContext, config: C): Promise<Attached<R>>;
  /** The exact inverse of attach: idempotent and tolerant of things already gone. */
  detach(ctx: PluginContext, attached: Attached<R>): Promise<void>;
}
