import type { ChildProcess } from 'node:child_process';
import { holdEventLoop } from '../host/child-ref.js';
import { helperArgv, type Tool } from '../host/netlink.js';
import { type NetnsRef, netnsRef } from '../host/netns.js';
import { RawChild } from './raw-spawn.js';

/**
 * The `ip` and `tc` helpers of one CNI call, started as the very first thing the process does
 * (cni/build/launcher.ts calls startEarlyHelpers before the plugin's code is even compiled), so
 * that their start (exec, dynamic linking, setns, the private /sys mount of `ip -n`: about 3 ms)
 * runs on the other CPU while Node reads stdin and validates the configuration. The plugin's
 * CoprocessNetlink adopts them on first use (host/netlink.ts checks the command line); a helper
 * nothing adopts gets EOF and exits with the plugin.
 *
 * Only ADD, DEL and CHECK with a CNI_NETNS get early helpers: those are the calls that work in that
 * one namespace. Nothing is validated here beyond what building the command line needs; a bad
 * CNI_NETNS makes the helper exit at once and the plugin reports the error as usual.
 */
interface Early {
  path: string;
  children: Map<Tool, ChildProcess>;
}

const KEY = Symbol.for('kata-cni.early-helpers');
type Holder = { [KEY]?: Early };

export function startEarlyHelpers(env: NodeJS.ProcessEnv): void {
  const command = env.CNI_COMMAND;
  if (command !== 'ADD' && command !== 'DEL' && command !== 'CHECK') return;
  const path = env.CNI_NETNS ?? '';
  if (!path.startsWith('/')) return;
  let ns: NetnsRef;
  try {
    ns = netnsRef(path);
  } catch {
    return;
  }
  const children = new Map<Tool, ChildProcess>();
  for (const tool of ['ip', 'tc'] as const) {
    const [file, args] = helperArgv(tool, ns, true);
    // Not started (no usable bindings, or e.g. ENOENT): CoprocessNetlink spawns its own and reports.
    const raw = RawChild.spawn(file, args);
    if (!raw) continue;
    // RawChild offers the part of ChildProcess that CoprocessNetlink uses (see raw-spawn.ts).
    const child = raw as unknown as ChildProcess;
    child.on('error', () => {});
    child.stdin?.on('error', () => {});
    holdEventLoop(child, false);
    children.set(tool, child);
  }
  (globalThis as Holder)[KEY] = { path: ns.path, children };
}

/** The early helper for (tool, ns), handed out once; undefined when there is none. */
export function takeEarlyHelper(tool: Tool, ns: NetnsRef | undefined): ChildProcess | undefined {
  const early = (globalThis as Holder)[KEY];
  if (!early || !ns || ns.path !== early.path) return undefined;
  const child = early.children.get(tool);
  early.children.delete(tool);
  return child;
}
