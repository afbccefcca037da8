/**
 * One process of a container in the guest (the init, or an exec) as the shim tracks it: its state,
 * the guest pid, its stdio between containerd's FIFOs and the agent, and its exit. The exit is
 * reported only after the output was drained and reached containerd's FIFOs, each with a bound
 * (Kata #3913, #13695: a grandchild that keeps stdout open must not hang Wait; nor must a FIFO
 * reader that went away), and every Wait, before or after, gets the same cached exit. Output is
 * never dropped by closing a FIFO writer with bytes still queued in it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentClient } from '../runtime-core/agent/client.js';
import { ProcessIo } from '../runtime-core/agent/process-io.js';
import { openStdio, type OpenedStdio, type StdioPaths } from './fifo-io.js';

export type ProcState = 'created' | 'running' | 'stopped';

export interface ProcExit {
  status: number;
  at: Date;
}

/**
 * After the exit, how long the output may stand still before it is given up (a grandchild holding
 * the pipe). An idle bound, not a total one: a backlog that keeps moving under load is delivered.
 */
const DRAIN_IDLE_MS = 5000;
/** How long what reached our FIFO writers may take to get into the FIFOs (the reader is slow or gone). */
const FLUSH_BOUND_MS = 10_000;
/** How long stdin may take to reach EOF after CloseIO said the client closed it. */
const STDIN_EOF_BOUND_MS = 2000;

/** true at the output's EOF; false once no output moved for idleMs since the exit or the last chunk. */
async function outputDrained(io: ProcessIo, idleMs: number): Promise<boolean> {
  const done = io.output.then(
    () => true,
    () => true,
  );
  const exitedAt = Date.now();
  for (;;) {
    const idle = Date.now() - Math.max(exitedAt, io.lastOutputAt);
    if (idle >= idleMs) return false;
    if (await Promise.race([done, sleep(idleMs - idle).then(() => false)])) return true;
  }
}

export class ShimProcess {
  state: ProcState = 'created';
  /** The guest pid once started. */
  pid = 0;
  exit: ProcExit | undefined;
  readonly exited: Promise<ProcExit>;
  private resolveExit!: (e: ProcExit) => void;
  private readonly stdio: OpenedStdio;
  private io: ProcessIo | undefined;

  constructor(
    readonly containerId: string,
    /** "" for the init process. */
    readonly execId: string,
    readonly paths: StdioPaths,
  ) {
    this.exited = new Promise((r) => {
      this.resolveExit = r;
    });
    // Opened at once: the stdin reader is there before the client writes (it waits for a reader).
    this.stdio = openStdio(paths);
  }

  /** The id the agent knows the process by (the init answers to the container id). */
  get agentExecId(): string {
    return this.execId || this.containerId;
  }

  /** The process started in the guest: pump its stdio and watch for its exit. */
  started(agent: AgentClient, pid: number, onExit: (p: ShimProcess) => void): void {
    this.pid = pid;
    this.state = 'running';
    this.io = new ProcessIo(agent, this.containerId, this.agentExecId, {
      ...(this.stdio.stdin ? { stdin: this.stdio.stdin } : {}),
      ...(this.stdio.stdout ? { stdout: this.stdio.stdout } : {}),
      ...(this.stdio.stderr ? { stderr: this.stdio.stderr } : {}),
    });
    const io = this.io;
    void agent
      .waitProcess(this.containerId, this.agentExecId, { timeoutMs: 0 })
      .catch(() => 255)
      .then(async (status) => {
        if (!(await outputDrained(io, DRAIN_IDLE_MS))) io.cancel('output stood still after the exit');
        await this.stdio.flush(FLUSH_BOUND_MS);
        this.finish(status);
        onExit(this);
      });
  }

  /** The client closed its stdin: make sure the guest process sees EOF (after what was written). */
  closeStdin(): void {
    const stdin = this.stdio.stdin;
    if (!stdin) return;
    const t = setTimeout(() => this.stdio.close(), STDIN_EOF_BOUND_MS);
    stdin.once('end', () => clearTimeout(t));
  }

  /** Record the exit (also for a process that never started: its exit is synthetic). */
  finish(status: number): void {
    if (this.exit) return;
    this.state = 'stopped';
    this.exit = { status, at: new Date() };
    this.stdio.close();
    this.resolveExit(this.exit);
  }

  /** Stop the pumps and close the FIFOs (the process is being deleted). */
  release(): void {
    this.io?.cancel('process deleted');
    this.stdio.close();
  }
}
