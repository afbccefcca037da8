import type { ChildProcess } from 'node:child_process';
import type { Tool } from '../host/netlink.js';
import type { NetnsRef } from '../host/netns.js';

/**
 * Where the launcher's early helpers (early-helpers.ts) wait for the plugin's code. The launcher and
 * the plugin's code are two scripts in one file (cni/build/launcher.ts), so they meet through a
 * global; this module holds no RawChild, so the plugin's code carries no second copy of it.
 */
export interface Early {
  path: string;
  children: Map<Tool, ChildProcess>;
  /** Start the tc helper (once); kept here so that the plugin's code needs no copy of RawChild. */
  startTc?: () => void;
}

const KEY = Symbol.for('kata-cni.early-helpers');
type Holder = { [KEY]?: Early };

export function setEarly(early: Early): void {
  (globalThis as Holder)[KEY] = early;
}

/** Start the call's tc helper now (why then: early-helpers.ts); nothing without early helpers or when it runs already. */
export function startTcHelper(): void {
  (globalThis as Holder)[KEY]?.startTc?.();
}

/** The early helper for (tool, ns), handed out once; undefined when there is none. */
export function takeEarlyHelper(tool: Tool, ns: NetnsRef | undefined): ChildProcess | undefined {
  const early = (globalThis as Holder)[KEY];
  if (!early || !ns || ns.path !== early.path) return undefined;
  if (tool === 'tc') early.startTc?.();
  const child = early.children.get(tool);
  early.children.delete(tool);
  return child;
}
