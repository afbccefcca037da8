/**
 * Processes in the guest's root environment (ExecProcess with container_id ""): the streaming
 * successor of Exec, with the same stdio, wait and signal semantics as a container's processes.
 * Finished processes keep their status and buffers until evicted (the newest few are kept).
 */
import type { Launcher } from './launcher.js';
import { type AgentProcess, winsizeOf } from './processes.js';
import { AgentError, type OciProcess } from './protocol.js';

const KEEP_FINISHED_ROOT = 32;

export class RootProcesses {
  private readonly root = new Map<string, AgentProcess>();

  constructor(private readonly launcher: Launcher) {}

  get(eid: string): AgentProcess {
    const p = this.root.get(eid);
    if (!p) throw new AgentError('E_NOT_FOUND', `no root-environment process with exec_id ${JSON.stringify(eid)}`);
    return p;
  }

  async exec(eid: string, proc: OciProcess): Promise<{ pid: number }> {
    if (this.root.has(eid)) throw new AgentError('E_ALREADY_EXISTS', `a root-environment process ${eid} exists already`);
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' };
    for (const kv of proc.env ?? []) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const terminal = proc.terminal === true;
    if (terminal) env.TERM ??= 'xterm';
    this.root.set(eid, undefined as never); // reserve the id while it starts
    try {
      const p = await this.launcher.launch(eid, terminal, () => proc.args, { env, cwd: proc.cwd, winsize: winsizeOf(proc) });
      this.root.set(eid, p);
      this.evictFinishedRoot();
      return { pid: p.mon.pid };
    } catch (e) {
      this.root.delete(eid);
      throw e;
    }
  }

  /** Keep the newest finished root-environment processes only (each holds its exit status and buffers). */
  private evictFinishedRoot(): void {
    const finished = [...this.root.entries()].filter(([, p]) => p?.exited && p.waited);
    for (const [eid] of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED_ROOT))) this.root.delete(eid);
  }
}
