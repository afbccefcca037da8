import type { ChildProcess } from 'node:child_process';
import { holdEventLoop } from '../host/child-ref.js';
import { helperArgv, type Tool } from '../host/netlink.js';
import { type NetnsRef, netnsRef } from '../host/netns.js';
import { type Early, setEarly } from './early-helper-holder.js';
import { spawnPair } from './helper-pair.js';
import { type Inherited, takeInherited } from './inherited-helpers.js';
import { RawChild } from './raw-spawn.js';
import { mark } from './timing.js';

/**
 * The `ip` and `tc` helpers of one CNI call, started early through RawChild (no node:child_process)
 * so that their start (exec, dynamic linking, setns, the private /sys mount of `ip -n`: about 3 ms
 * each) overlaps the plugin's own work. The plugin's CoprocessNetlink adopts them on first use
 * (host/netlink.ts checks the command line); a helper nothing adopts gets EOF and exits with the
 * plugin.
 *
 * Both come from ONE spawn (helper-pair.ts: a shell that execs `ip` and forks the `tc` side): each
 * spawn forks the whole Node process and waits for its exec. The spawn is the very first thing the
 * process does (cni/build/launcher.ts calls startEarlyHelpers before the plugin's code is even
 * compiled): ip's first answer (the pod link) is what every call waits for first. The tc side waits
 * for its go line, written by startTcHelper once that first request is on its way (cni/run.ts): a
 * call needs tc only after ip's answer (ADD: once the tap exists), and on two CPUs, two helpers
 * starting side by side with Node's own start delay ip's answer (ADD 1.5-2.3 ms, measured with two
 * spawns). Without /bin/sh the two are spawned one each, at those same moments.
 *
 * Only ADD, DEL and CHECK with a CNI_NETNS get early helpers: those are the calls that work in that
 * one namespace. Nothing is validated here beyond what building the command line needs; a bad
 * CNI_NETNS makes the helper exit at once and the plugin reports the error as usual. `shell` is for
 * the tests (the fallback).
 *
 * The executable's own shell lines (cni/build/shell-boot.ts) start both before Node does, on the
 * same conditions: then there is nothing to spawn here, only the helpers to take over
 * (inherited-helpers.ts). This spawning is for a plugin run by `node` itself.
 */
export function startEarlyHelpers(env: NodeJS.ProcessEnv, shell?: string): void {
  const inherited = takeInherited(env);
  if (inherited !== undefined) {
    if (inherited) adopt(inherited);
    return;
  }
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
  const early: Early = { path: ns.path, children };
  const pair = spawnPair(helperArgv('ip', ns, true), helperArgv('tc', ns, true), shell);
  if (pair) {
    // One spawn for both: the tc side waits for its "go" line (helper-pair.ts).
    keep('ip', pair.main, children);
    keep('tc', pair.side, children);
    early.startTc = () => {
      early.startTc = undefined;
      pair.side.go();
    };
  } else {
    // No pair (e.g. no /bin/sh): one spawn each, as before the pair.
    early.startTc = () => {
      early.startTc = undefined;
      spawnHelper('tc', ns, children);
    };
    spawnHelper('ip', ns, children);
  }
  setEarly(early);
}

function adopt(inherited: Inherited): void {
  const children = new Map<Tool, ChildProcess>();
  const early: Early = { path: inherited.ns.path, children };
  if (inherited.ip) keep('ip', inherited.ip, children);
  mark('helpers-inherited');
  early.startTc = () => {
    early.startTc = undefined;
    const tc = inherited.startTc();
    if (tc) keep('tc', tc, children);
  };
  setEarly(early);
}

function spawnHelper(tool: Tool, ns: NetnsRef, children: Map<Tool, ChildProcess>): void {
  const [file, args] = helperArgv(tool, ns, true);
  // Not started (no usable bindings, or e.g. ENOENT): CoprocessNetlink spawns its own and reports.
  const raw = RawChild.spawn(file, args);
  if (raw) keep(tool, raw, children);
}

function keep(tool: Tool, raw: object, children: Map<Tool, ChildProcess>): void {
  // RawChild, SideChild and InheritedChild offer the part of ChildProcess that CoprocessNetlink
  // uses (see raw-spawn.ts, helper-pair.ts, inherited-helpers.ts).
  const child = raw as ChildProcess;
  child.on('error', () => {});
  child.stdin?.on('error', () => {});
  holdEventLoop(child, false);
  children.set(tool, child);
}
