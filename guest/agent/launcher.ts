/**
 * Starting a process under kata-monitor with its io set up: a FIFO directory (pipes), a console
 * socket path (runc with a terminal: runc hands the pty master to the monitor), or nothing (a pty
 * the monitor makes itself). Waits until the process runs; a failure carries what was printed.
 */
import { fsp } from './builtins.js';
import { join } from 'node:path';
import { MonitoredProcess, type MonitorOptions } from './monitor.js';
import { AgentProcess } from './processes.js';
import { AgentError } from './protocol.js';

export interface LaunchContext {
  /** The kata-monitor binary. */
  monitor: string;
  /** FIFO directories and console sockets (short paths: a socket path has 108 bytes at most). */
  ioRoot: string;
  drainIdleMs?: number;
  /** Output buffer bound per stream. */
  highWater?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Launcher {
  private seq = 0;

  constructor(private readonly ctx: LaunchContext) {}

  /** A FIFO directory (pipes), a console socket path (runc with a terminal), or nothing (a pty made by the monitor). */
  private async newIo(terminal: boolean, runc: boolean): Promise<{ ioDir?: string; consoleSocket?: string }> {
    const n = ++this.seq;
    if (terminal && !runc) return {};
    if (terminal) {
      await fsp().mkdir(this.ctx.ioRoot, { recursive: true });
      return { consoleSocket: join(this.ctx.ioRoot, `c${n}.sock`) };
    }
    const ioDir = join(this.ctx.ioRoot, `io${n}`);
    await fsp().mkdir(ioDir, { recursive: true });
    return { ioDir };
  }

  /** Start a monitored process (extra.pidFile: the program is runc, which exits once the process runs) and wait until it runs; on failure the error carries what it printed. */
  async launch(
    execId: string,
    terminal: boolean,
    argv: (consoleSocket: string | undefined) => string[],
    extra: Partial<MonitorOptions> = {},
  ): Promise<AgentProcess> {
    const io = await this.newIo(terminal, extra.pidFile !== undefined);
    const mon = new MonitoredProcess({
      monitor: this.ctx.monitor,
      argv: argv(io.consoleSocket),
      terminal,
      highWater: this.ctx.highWater,
      ...io,
      ...extra,
    });
    const cleanIo = (): Promise<void> =>
      io.ioDir
        ? fsp()
            .rmdir(io.ioDir)
            .catch(() => {})
        : Promise.resolve();
    try {
      await mon.started;
    } catch (e) {
      await Promise.race([mon.gone(), sleep(2000)]);
      const printed = [mon.diagnostics, mon.stderr.drainText().trim()].filter(Boolean).join('; ');
      mon.destroy();
      await cleanIo();
      throw new AgentError((e as AgentError).code ?? 'E_EXEC', `${(e as Error).message}${printed ? `: ${printed}` : ''}`);
    }
    await cleanIo(); // the monitor unlinked the FIFOs before the process ran
    return new AgentProcess(execId, mon, terminal, this.ctx.drainIdleMs);
  }
}
