/**
 * A process the agent serves (a container's init or exec, or a root-environment process) and what
 * WaitProcess answers for it.
 *
 * The exit is reported once the process exited AND its output is in the agent's buffers, with a
 * bound: each output stream must be at EOF, or held back by a full buffer (the host is behind; its
 * data is not lost), or idle for `drainIdleMs` (a background grandchild keeps the pipe open: Kata
 * bugs #3913/#13695, where Wait hung on IO EOF). The status is cached: every waiter, now or later,
 * gets it (Kata's agent forgets it after the first Wait; its shim has to cache it).
 */
import { AgentError, type OciProcess, type ProcessInfo } from './protocol.js';
import type { MonitoredProcess } from './monitor.js';
import type { OutputStream } from './streams.js';

/** Defaults: how long an output stream may stay silent after the exit before it is ended. */
const DRAIN_IDLE_MS = 1000;
/** Upper bound of the drain after the exit, whatever the streams do. */
const DRAIN_MAX_MS = 5000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function drained(s: OutputStream, idleMs: number): Promise<void> {
  while (!s.isEnded && !s.isBackpressured && s.idleMs < idleMs) await Promise.race([s.ended, sleep(Math.max(10, idleMs / 5))]);
}

export class AgentProcess {
  private status: Promise<number> | undefined;
  waited = false;

  constructor(
    readonly execId: string,
    readonly mon: MonitoredProcess,
    readonly terminal: boolean,
    private readonly drainIdleMs = DRAIN_IDLE_MS,
  ) {
    // From the exit on, a stream whose pipe stays open is ended once it is idle (see above).
    void mon.exited.then(() => {
      mon.stdout.abandonWhenIdle(drainIdleMs);
      mon.stderr.abandonWhenIdle(drainIdleMs);
    });
  }

  /** The exit status, after the bounded drain; the same promise for every caller. */
  wait(): Promise<number> {
    this.status ??= (async () => {
      const st = await this.mon.exited;
      const both = Promise.all([drained(this.mon.stdout, this.drainIdleMs), drained(this.mon.stderr, this.drainIdleMs)]);
      await Promise.race([both, sleep(DRAIN_MAX_MS)]);
      return st;
    })();
    return this.status.finally(() => {
      this.waited = true;
    });
  }

  get exited(): boolean {
    return this.mon.exitStatus !== undefined;
  }

  info(): ProcessInfo {
    return { exec_id: this.execId, pid: this.mon.pid, terminal: this.terminal, exit_status: this.mon.exitStatus ?? null };
  }

  stream(which: 'stdout' | 'stderr'): OutputStream {
    return which === 'stdout' ? this.mon.stdout : this.mon.stderr;
  }
}

/** Checks an OCI `process` from the wire (the fields the agent relies on). */
export function checkOciProcess(p: unknown, what: string): OciProcess {
  if (p === null || typeof p !== 'object' || Array.isArray(p))
    throw new AgentError('E_INVALID_ARGUMENT', `${what} must be an OCI process object`);
  const o = p as OciProcess;
  if (!Array.isArray(o.args) || o.args.length === 0 || !o.args.every((a) => typeof a === 'string'))
    throw new AgentError('E_INVALID_ARGUMENT', `${what}.args must be a non-empty array of strings`);
  if (o.env !== undefined && (!Array.isArray(o.env) || !o.env.every((e) => typeof e === 'string')))
    throw new AgentError('E_INVALID_ARGUMENT', `${what}.env must be an array of "KEY=value" strings`);
  if (typeof o.cwd !== 'string' || !o.cwd.startsWith('/'))
    throw new AgentError('E_INVALID_ARGUMENT', `${what}.cwd must be an absolute path`);
  if (o.terminal !== undefined && typeof o.terminal !== 'boolean')
    throw new AgentError('E_INVALID_ARGUMENT', `${what}.terminal must be a boolean`);
  return o;
}

/** Window size of an OCI process (consoleSize), if any. */
export function winsizeOf(p: OciProcess): { rows: number; cols: number } | undefined {
  const c = p.consoleSize;
  return c && c.height > 0 && c.width > 0 ? { rows: c.height, cols: c.width } : undefined;
}
