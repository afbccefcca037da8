import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { helperArgv, linkReadLine, type PreSent, SENTINEL, type Tool } from '../host/netlink.js';
import { type NetnsRef, netnsRef } from '../host/netns.js';
import { type Reader, type Writer, openPipe } from './raw-spawn.js';
import { UnreapedChild } from './unreaped-child.js';

/**
 * The `ip` and `tc` helpers that the executable's shell lines (cni/build/shell-boot.ts) started
 * before Node did, taken over from the fds and the KATA_CNI_EARLY value the shell hands down.
 * InheritedChild offers what CoprocessNetlink (host/netlink.ts) uses of a ChildProcess, as
 * SideChild does (helper-pair.ts): both helpers are children of this process that libuv knows
 * nothing of, so there is no exit status; 'exit' comes when the helper's stdout and stderr reach
 * EOF (it exited: nobody else holds those pipes), with 127 when the shell's exec found no such
 * command (its message on stderr), else 0 unless a signal was sent. A kill by pid goes only to a
 * child of this process: Node never reaps them, so a pid stays theirs (a zombie at worst) while it
 * lives, except one the shell reaped before its exec (a helper that died at once; isChild).
 *
 * The inherited fds are reopened through /proc/self/fd (Node's opens are close-on-exec) and the
 * originals closed: otherwise every process the plugin spawns later would hold the helpers' pipes.
 * Anything not as expected (a pid that is not this process's: a stale value from the environment;
 * a helper already gone; a namespace netnsRef decides otherwise) leaves that helper unadopted: it
 * gets EOF when this process exits, and CoprocessNetlink starts its own.
 */
export const EARLY_ENV = 'KATA_CNI_EARLY';
const NONBLOCK = constants.O_NONBLOCK;

export interface Inherited {
  ns: NetnsRef;
  ip: ChildProcess | undefined;
  /** Take the tc helper over and let it start (its go line); undefined when it cannot be. */
  startTc: () => ChildProcess | undefined;
}

export class InheritedChild extends UnreapedChild {
  private open = 2;
  private errTail = '';
  /** The request the shell lines sent the helper (ADD's read of CNI_IFNAME), if any. */
  preSent: PreSent | undefined;

  constructor(
    readonly pid: number,
    readonly spawnfile: string,
    readonly spawnargs: readonly string[],
    readonly stdin: Writer,
    readonly stdout: Reader,
    readonly stderr: Reader,
  ) {
    super();
    stderr.watch((d) => {
      this.errTail = (this.errTail + d.toString('latin1')).slice(-300);
    });
    for (const r of [stdout, stderr]) r.on('end', () => this.onEnd());
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    return !this.hasExited && this.isChild() && this.signalPid(this.pid, signal);
  }

  /**
   * The pid is still a child of this process. Once Node runs nothing reaps the helpers, but the
   * shell may have reaped one that died before it exec'd Node: then its pid may be another's.
   */
  private isChild(): boolean {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'latin1');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid;
    } catch {
      return false;
    }
  }

  private onEnd(): void {
    if (--this.open > 0) return;
    this.exited(/exec: \S+: not found/.test(this.errTail) ? 127 : 0);
  }
}

/** fd (inherited, no close-on-exec) reopened close-on-exec, the original closed; undefined: not reopened. */
function reopen(path: string, flags: number, original?: number): number | undefined {
  try {
    return openSync(path, flags | NONBLOCK);
  } catch {
    return undefined;
  } finally {
    if (original !== undefined) closeSync(original);
  }
}

function pipeOf(path: string, kind: 'r' | 'w', original?: number): Reader | Writer | undefined {
  const fd = reopen(path, kind === 'w' ? constants.O_WRONLY : constants.O_RDONLY, original);
  if (fd === undefined) return undefined;
  const p = kind === 'w' ? openPipe(fd, 'w') : openPipe(fd, 'r');
  if (!p) closeSync(fd);
  return p;
}

const own = (fd: number): string => `/proc/self/fd/${fd}`;

/**
 * The lines the shell lines write to ip for ADD (cni/build/shell-boot.ts), with `ifname` as they
 * spell CNI_IFNAME: the pod link's read as readLink (plugins/network/link-info.ts) asks it of an
 * ipDetails CoprocessNetlink, then the sentinel that ends a request.
 */
export function preSentLines(ifname: string): string[] {
  return [linkReadLine(ifname), SENTINEL.ip];
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // not open
  }
}

/**
 * The helpers the shell started, from env[EARLY_ENV] (removed from env): undefined when there is
 * no such value for this process (start them from Node instead), null when the shell started none.
 */
export function takeInherited(env: NodeJS.ProcessEnv): Inherited | null | undefined {
  const value = env[EARLY_ENV];
  if (value === undefined) return undefined;
  delete env[EARLY_ENV];
  if (value === '') return null;
  const [self, mode, ipPid, tcPid, sent] = value.split(' ');
  if (Number(self) !== process.pid) return undefined;
  const pidOf = (s: string | undefined): number => (s && /^[1-9][0-9]*$/.test(s) ? Number(s) : 0);
  let ns: NetnsRef | undefined;
  try {
    ns = netnsRef(env.CNI_NETNS ?? '');
  } catch {
    ns = undefined;
  }
  if (!ns || (ns.name !== undefined) !== (mode === 'n')) {
    // Not for this call's namespace as the plugin reads it: EOF ends both helpers now.
    for (const fd of [3, 4, 5, 7]) closeQuietly(fd);
    return null;
  }
  const nsRef = ns;
  const child = (tool: Tool, pid: number, pipes: (Reader | Writer | undefined)[]): ChildProcess | undefined => {
    const [stdin, stdout, stderr] = pipes as [Writer?, Reader?, Reader?];
    if (!pid || !stdin || !stdout || !stderr) {
      // Not adoptable: EOF on its stdin ends the helper now.
      stdin?.end();
      stdout?.close();
      stderr?.close();
      return undefined;
    }
    const [file, args] = helperArgv(tool, nsRef, true);
    return new InheritedChild(pid, file, [file, ...args], stdin, stdout, stderr) as unknown as ChildProcess;
  };
  const ip = child('ip', pidOf(ipPid), [pipeOf(own(3), 'w', 3), pipeOf(own(4), 'r', 4), pipeOf(own(5), 'r', 5)]);
  // "r": the shell wrote the read of CNI_IFNAME and the sentinel to ip (preSentLines).
  if (ip && sent === 'r' && env.CNI_IFNAME)
    (ip as unknown as InheritedChild).preSent = { lines: [linkReadLine(env.CNI_IFNAME)], read: true };
  const tcIn = pipeOf(own(7), 'w', 7) as Writer | undefined;
  let started = false;
  const startTc = (): ChildProcess | undefined => {
    if (started || !tcIn) return undefined;
    started = true;
    // fd 9 of the subshell exists once its stdout and stderr pipes do (shell-boot.ts).
    const dir = `/proc/${pidOf(tcPid)}/fd`;
    const pipes = existsSync(`${dir}/9`) ? [tcIn, pipeOf(`${dir}/3`, 'r'), pipeOf(`${dir}/4`, 'r')] : [tcIn];
    const tc = child('tc', pidOf(tcPid), pipes);
    if (tc) tcIn.write('go\n');
    return tc;
  };
  return { ns: nsRef, ip, startTc };
}
