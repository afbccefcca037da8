/**
 * Starting a process under kata-monitor (guest/monitor/kata-monitor.c) and wiring its stdio into
 * the agent's streams. The monitor is a subreaper (so `runc create`/`runc exec -d` leave the real
 * process as its child and its status can be read), takes runc's pty master over the console
 * socket, and reports on fd 3: "fifos", "pid N", "exit STATUS", "error MESSAGE".
 *
 * Pipe mode: the process's stdin/stdout/stderr are FIFOs the monitor makes in `ioDir`; the agent
 * opens its ends non-blocking and wraps them in net.Socket (the process sees real pipes, so
 * /dev/stdout works, unlike with Node's socketpairs). Terminal mode: the monitor relays the pty
 * over its own fds 0/1; stderr is empty (the pty merges it).
 */
import type { ChildProcess } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import type { Socket } from 'node:net';
import { childProcess, net } from './builtins.js';
import type { Readable, Writable } from 'node:stream';
import { AgentError } from './protocol.js';
import { InputStream, OutputStream } from './streams.js';

export interface MonitorOptions {
  /** The kata-monitor binary. */
  monitor: string;
  /** Program and arguments (runc ..., or the command itself). */
  argv: string[];
  terminal: boolean;
  /** Pipe mode: the directory for the FIFOs (must exist, empty). */
  ioDir?: string;
  /** Terminal mode with runc: the console socket path to listen on. */
  consoleSocket?: string;
  /** The program exits once the real process runs and writes its pid here (runc). */
  pidFile?: string;
  winsize?: { rows: number; cols: number };
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Output buffer bound per stream (bytes). */
  highWater?: number;
}

function lines(src: Readable, onLine: (l: string) => void): void {
  let buf = '';
  src.setEncoding('utf8');
  src.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

function fifoSocket(path: string, write: boolean): Socket {
  const fd = openSync(path, (write ? constants.O_WRONLY : constants.O_RDONLY) | constants.O_NONBLOCK);
  return new (net().Socket)({ fd, readable: !write, writable: write });
}

export class MonitoredProcess {
  readonly stdin = new InputStream();
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  /** Resolves with the pid once the process runs; rejects when it could not be started. */
  readonly started: Promise<number>;
  /** Resolves with the exit status (code, or 128 + signal). */
  readonly exited: Promise<number>;
  pid = 0;
  exitStatus: number | undefined;
  private readonly child: ChildProcess;
  private diag = '';

  constructor(private readonly opts: MonitorOptions) {
    const args: string[] = [];
    if (opts.terminal) {
      args.push('-t');
      if (opts.consoleSocket) args.push('-c', opts.consoleSocket);
    } else {
      if (!opts.ioDir) throw new AgentError('E_INTERNAL', 'pipe mode needs an io directory');
      args.push('-f', opts.ioDir);
    }
    if (opts.pidFile) args.push('-p', opts.pidFile);
    if (opts.winsize) args.push('-w', `${opts.winsize.rows}:${opts.winsize.cols}`);
    args.push('--', ...opts.argv);
    this.stdout = new OutputStream(opts.highWater);
    this.stderr = opts.terminal ? OutputStream.empty() : new OutputStream(opts.highWater);
    this.child = childProcess().spawn(opts.monitor, args, {
      stdio: [opts.terminal ? 'pipe' : 'ignore', opts.terminal ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    if (opts.terminal) {
      this.stdin.attach(this.child.stdin as Writable);
      this.stdout.attach(this.child.stdout as Readable);
    }
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (this.diag.length < 16_384) this.diag += d;
    });
    let onPid!: (pid: number) => void;
    let onFail!: (e: Error) => void;
    let onExit!: (s: number) => void;
    this.started = new Promise((res, rej) => {
      onPid = res;
      onFail = rej;
    });
    this.started.catch(() => {});
    this.exited = new Promise((res) => {
      onExit = res;
    });
    const ctl = this.child.stdio[4] as Writable;
    ctl.on('error', () => {});
    lines(this.child.stdio[3] as Readable, (l) => {
      if (l === 'fifos') {
        try {
          const dir = opts.ioDir!;
          this.stdout.attach(fifoSocket(`${dir}/1`, false));
          this.stderr.attach(fifoSocket(`${dir}/2`, false));
          this.stdin.attach(fifoSocket(`${dir}/0`, true));
          ctl.write('go\n');
        } catch (e) {
          onFail(new AgentError('E_EXEC', `cannot open the process's pipes in ${opts.ioDir}: ${(e as Error).message}`));
          this.child.kill('SIGKILL');
        }
      } else if (l.startsWith('pid ')) {
        this.pid = Number(l.slice(4));
        onPid(this.pid);
      } else if (l.startsWith('exit ')) {
        this.exitStatus = Number(l.slice(5));
        onExit(this.exitStatus);
      } else if (l.startsWith('error ')) {
        onFail(new AgentError('E_EXEC', l.slice(6)));
      }
    });
    this.child.on('error', (e) => onFail(new AgentError('E_EXEC', `cannot start ${opts.monitor}: ${e.message}`)));
    // 'close', not 'exit': only then has every status line the monitor wrote been read.
    this.child.on('close', (code, signal) => {
      onFail(new AgentError('E_EXEC', `kata-monitor ended (${signal ?? code}) before the process ran: ${this.diag.trim()}`));
      // A monitor that died without reporting (killed): the process's status is unknown.
      if (this.exitStatus === undefined) {
        this.exitStatus = 255;
        onExit(255);
      }
      if (!opts.terminal) return;
      this.stdin.destroy();
    });
  }

  /** What the monitor (and a program that failed before the process ran) wrote to fd 2. */
  get diagnostics(): string {
    return this.diag.trim();
  }

  get running(): boolean {
    return this.pid > 0 && this.exitStatus === undefined;
  }

  resize(rows: number, cols: number): void {
    if (!this.opts.terminal) throw new AgentError('E_FAILED_PRECONDITION', 'the process has no terminal');
    (this.child.stdio[4] as Writable).write(`resize ${rows} ${cols}\n`);
  }

  /** Signal the process itself (not the monitor); nothing when it already exited. */
  signal(sig: number): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, sig);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }

  /** Kill the monitor and drop the streams (RemoveContainer, failed create). */
  destroy(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    this.stdin.destroy();
    this.stdout.abandon();
    this.stderr.abandon();
  }

  /** Resolves once the monitor process is gone. */
  gone(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((r) => this.child.once('exit', () => r()));
  }
}
