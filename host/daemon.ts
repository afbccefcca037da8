import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { accessSync, constants as fsc, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { KataError } from './errors.js';
import { noteSpawn, run } from './exec.js';
import type { Logger } from './log.js';
import { isSameProcessAlive, readProcStat } from './proc.js';
import { sleep } from './retry.js';

/**
 * A supervised long-lived child process (virtiofsd, QEMU, ...): started so that it dies with its
 * parent where possible, its output forwarded to the logger line by line, its unexpected exit
 * reported at once, stopped with TERM then KILL. A JSON DaemonRecord {pid, startTime} lets a
 * later process find and stop a daemon left behind by a crashed runtime without ever signalling a
 * process that merely reuses the pid.
 */

export interface DaemonOptions {
  /** Short name for logs and errors, e.g. "virtiofsd". */
  name: string;
  /** Program path (or a name looked up in PATH). */
  file: string;
  args: readonly string[];
  /** Added to (not replacing) the current environment. */
  env?: Record<string, string>;
  cwd?: string;
  log: Logger;
  /** Wrap with `setpriv --pdeathsig SIGKILL --` so the daemon is killed when its parent dies (default true). */
  pdeathsig?: boolean;
  /** Run inside this network namespace (`nsenter --net=PATH`), e.g. so QEMU opens taps by name. */
  netnsPath?: string;
  /** How many stderr lines to keep for error messages (default 50). */
  stderrLines?: number;
  /**
   * Open file descriptors the daemon gets as fds 3, 4, ... in this order (e.g. macvtap queues for
   * QEMU's `-netdev tap,fds=3:4`); the wrappers (setpriv, nsenter) exec without closing them. The
   * caller still owns its copies and closes them once startDaemon has returned.
   */
  extraFds?: readonly number[];
}

/** What callers persist to find the daemon again after a crash of their own. */
export interface DaemonRecord {
  name: string;
  pid: number;
  /** Field 22 of /proc/PID/stat: clock ticks after boot. */
  startTime: number;
  file: string;
  args?: string[];
}

export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the exit followed stop() (or a signal we sent); false = a crash. */
  expected: boolean;
}

export interface StopOptions {
  /** Milliseconds between SIGTERM and SIGKILL (default 2000; 0 = SIGKILL at once). */
  graceMs?: number;
  /**
   * Repeat SIGTERM at this interval during the grace period (default: once). For daemons whose
   * handler only sets a flag: a TERM landing just before a blocking accept() is otherwise missed
   * (the C virtiofsd does this right after it starts listening).
   */
  termRepeatMs?: number;
}

const DEFAULT_GRACE_MS = 2000;
const MAX_LINE = 4096;

let setprivProbe: Promise<boolean> | undefined;
let setprivWarned = false;

/** Whether util-linux setpriv with --pdeathsig is available (probed once per process). */
export function setprivAvailable(): Promise<boolean> {
  setprivProbe ??= run('setpriv', ['--help'], { reject: false, timeoutMs: 5000 })
    .then((r) => r.exitCode === 0 && r.stdout.includes('--pdeathsig'))
    .catch(() => false);
  return setprivProbe;
}

/** Resolve a program the way exec does: a path with "/" as is, else the first executable in PATH. */
export function resolveExecutable(file: string): string | undefined {
  const ok = (p: string): boolean => {
    try {
      accessSync(p, fsc.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (file.includes('/')) return ok(file) ? file : undefined;
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (dir && ok(join(dir, file))) return join(dir, file);
  }
  return undefined;
}

/** The full argv that startDaemon executes (exported for tests and for logging). */
export function wrapArgv(file: string, args: readonly string[], opts: { pdeathsig: boolean; netnsPath?: string }): [string, string[]] {
  let argv: string[] = [file, ...args];
  if (opts.netnsPath !== undefined) argv = ['nsenter', `--net=${opts.netnsPath}`, '--', ...argv];
  if (opts.pdeathsig) argv = ['setpriv', '--pdeathsig', 'SIGKILL', '--', ...argv];
  return [argv[0]!, argv.slice(1)];
}

export class Daemon extends EventEmitter<{ exit: [DaemonExit] }> {
  readonly name: string;
  readonly pid: number;
  /** Start time (clock ticks after boot); -1 if the process was gone before it could be read. */
  readonly startTime: number;
  readonly file: string;
  readonly args: readonly string[];
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<DaemonExit>;

  private readonly child: ChildProcess;
  private readonly log: Logger;
  private readonly tail: string[] = [];
  private readonly tailMax: number;
  private exitInfo: DaemonExit | undefined;
  private stopping = false;
  private stopPromise: Promise<DaemonExit> | undefined;

  /** @internal use startDaemon */
  constructor(child: ChildProcess, opts: DaemonOptions, startTime: number) {
    super();
    this.child = child;
    this.name = opts.name;
    this.pid = child.pid!;
    this.startTime = startTime;
    this.file = opts.file;
    this.args = [...opts.args];
    this.tailMax = opts.stderrLines ?? 50;
    this.log = opts.log.child({ daemon: opts.name, daemonPid: this.pid });

    for (const [stream, src] of [
      ['stdout', child.stdout],
      ['stderr', child.stderr],
    ] as const) {
      if (!src) continue;
      const rl = createInterface({ input: src, crlfDelay: Infinity });
      rl.on('line', (raw) => {
        const line = raw.length > MAX_LINE ? `${raw.slice(0, MAX_LINE)}...` : raw;
        if (stream === 'stderr') {
          this.tail.push(line);
          if (this.tail.length > this.tailMax) this.tail.shift();
        }
        this.log.info({ stream }, line);
      });
    }

    const streamsClosed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    this.exited = new Promise<DaemonExit>((resolve) => {
      child.once('exit', (code, signal) => {
        const info: DaemonExit = { code, signal, expected: this.stopping };
        // Give the pipes a moment to deliver the last lines (bounded: a grandchild may hold them).
        void Promise.race([streamsClosed, sleep(100)]).then(() => {
          this.exitInfo = info;
          if (info.expected) this.log.info({ code, signal }, `${this.name} exited`);
          else this.log.error({ code, signal, stderr: this.tail.slice(-10) }, `${this.name} exited unexpectedly`);
          resolve(info);
          this.emit('exit', info);
        });
      });
    });
    child.on('error', (err) => this.log.warn({ err }, `${this.name}: process error`));
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exitInfo === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The exit, once it happened. */
  get exitStatus(): DaemonExit | undefined {
    return this.exitInfo;
  }

  /** The last stderr lines (newest last). */
  stderrTail(n = this.tailMax): string[] {
    return this.tail.slice(-n);
  }

  record(): DaemonRecord {
    return { name: this.name, pid: this.pid, startTime: this.startTime, file: this.file, args: [...this.args] };
  }

  /**
   * The daemon is about to exit because we asked it another way (e.g. QEMU's QMP quit): its exit
   * is then reported as expected, not as a crash.
   */
  expectExit(): void {
    this.stopping = true;
  }

  /** Send a signal (marks the exit it causes as expected unless `expected` is false). */
  signal(sig: NodeJS.Signals, expected = true): void {
    if (!this.running) return;
    if (expected) this.stopping = true;
    try {
      this.child.kill(sig);
    } catch (err) {
      this.log.warn({ err, signal: sig }, `${this.name}: kill failed`);
    }
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves when the process has exited. Harmless when already stopped. */
  stop(opts: StopOptions = {}): Promise<DaemonExit> {
    if (this.stopPromise) return this.stopPromise;
    if (!this.running) return this.exited;
    const grace = opts.graceMs ?? DEFAULT_GRACE_MS;
    this.stopPromise = (async () => {
      this.stopping = true;
      if (grace <= 0) {
        this.child.kill('SIGKILL');
        return this.exited;
      }
      this.child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      let repeat: NodeJS.Timeout | undefined;
      if (opts.termRepeatMs !== undefined && opts.termRepeatMs > 0) {
        repeat = setInterval(() => {
          if (this.running) this.child.kill('SIGTERM');
        }, opts.termRepeatMs);
      }
      const timedOut = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), grace);
      });
      const first = await Promise.race([this.exited, timedOut]);
      clearTimeout(timer);
      clearInterval(repeat);
      if (first === 'timeout' && this.running) {
        this.log.warn({ graceMs: grace }, `${this.name} did not exit after SIGTERM; sending SIGKILL`);
        this.child.kill('SIGKILL');
      }
      return this.exited;
    })();
    return this.stopPromise;
  }

  /** Let the caller's event loop exit while the daemon still runs. */
  unref(): void {
    this.child.unref();
    for (const s of [this.child.stdout, this.child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();
  }
}

/**
 * Start a daemon. Resolves once the process exists (exec done); readiness is the caller's
 * business (a socket, a QMP greeting). Throws E_EXEC_NOT_FOUND for a missing program,
 * E_NETNS_NOT_FOUND for a missing namespace, E_DAEMON_START when the spawn itself fails.
 */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  if (resolveExecutable(opts.file) === undefined) {
    throw new KataError('E_EXEC_NOT_FOUND', `${opts.name}: program ${opts.file} not found or not executable`, {
      daemon: opts.name,
      file: opts.file,
    });
  }
  if (opts.netnsPath !== undefined && !existsSync(opts.netnsPath)) {
    throw new KataError('E_NETNS_NOT_FOUND', `${opts.name}: network namespace ${opts.netnsPath} does not exist`, {
      daemon: opts.name,
      netns: opts.netnsPath,
    });
  }
  let pdeathsig = opts.pdeathsig ?? true;
  if (pdeathsig && !(await setprivAvailable())) {
    if (!setprivWarned) {
      opts.log.warn(
        'setpriv with --pdeathsig is not available (install util-linux): daemons will not die with their parent; stale ones are cleaned from persisted records',
      );
      setprivWarned = true;
    }
    pdeathsig = false;
  }
  const [file, args] = wrapArgv(opts.file, opts.args, {
    pdeathsig,
    ...(opts.netnsPath !== undefined ? { netnsPath: opts.netnsPath } : {}),
  });
  noteSpawn();
  const child = spawn(file, args, {
    stdio: ['ignore', 'pipe', 'pipe', ...(opts.extraFds ?? [])],
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      child.off('spawn', onSpawn);
      reject(
        new KataError(
          'E_DAEMON_START',
          `${opts.name}: could not start ${file}: ${err.message}`,
          { daemon: opts.name, file },
          { cause: err },
        ),
      );
    };
    const onSpawn = (): void => {
      child.off('error', onError);
      resolve();
    };
    child.once('error', onError);
    child.once('spawn', onSpawn);
  });
  // exec(2) keeps the pid and the start time, so the wrappers' pid is the daemon's own.
  const st = readProcStat(child.pid!);
  const d = new Daemon(child, opts, st?.startTime ?? -1);
  opts.log.debug({ daemon: opts.name, daemonPid: d.pid, argv: [file, ...args] }, `${opts.name} started`);
  return d;
}

/** Is the process of a record still the same process and running? */
export function isAlive(record: Pick<DaemonRecord, 'pid' | 'startTime'>): boolean {
  return isSameProcessAlive(record.pid, record.startTime);
}

export type KillOutcome = 'not-running' | 'terminated' | 'killed';

async function waitGone(
  record: Pick<DaemonRecord, 'pid' | 'startTime'>,
  ms: number,
  resignal?: { sig: NodeJS.Signals; everyMs: number },
): Promise<boolean> {
  const start = Date.now();
  const deadline = start + ms;
  let lastSignal = start;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    if (!isAlive(record)) return true;
    const now = Date.now();
    if (now >= deadline) return false;
    if (resignal && now - lastSignal >= resignal.everyMs) {
      signalIfSame(record, resignal.sig);
      lastSignal = now;
    }
    await sleep(delay);
  }
}

function signalIfSame(record: Pick<DaemonRecord, 'pid' | 'startTime'>, sig: NodeJS.Signals): boolean {
  if (!isAlive(record)) return false;
  try {
    process.kill(record.pid, sig);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

/**
 * Stop a daemon known only from its record (e.g. left by a crashed runtime): verify pid + start
 * time, SIGTERM, SIGKILL after graceMs, wait until it is gone. A record whose process is gone, or
 * whose pid now belongs to another process, is left alone ('not-running').
 */
export async function killFromRecord(record: DaemonRecord, opts: StopOptions & { log?: Logger } = {}): Promise<KillOutcome> {
  const grace = opts.graceMs ?? DEFAULT_GRACE_MS;
  if (grace > 0) {
    if (!signalIfSame(record, 'SIGTERM')) return 'not-running';
    const resignal =
      opts.termRepeatMs !== undefined && opts.termRepeatMs > 0 ? { sig: 'SIGTERM' as const, everyMs: opts.termRepeatMs } : undefined;
    if (await waitGone(record, grace, resignal)) return 'terminated';
    opts.log?.warn({ daemon: record.name, daemonPid: record.pid, graceMs: grace }, `${record.name} ignored SIGTERM; sending SIGKILL`);
  }
  if (!signalIfSame(record, 'SIGKILL')) return grace > 0 ? 'terminated' : 'not-running';
  if (!(await waitGone(record, 5000))) {
    throw new KataError('E_TIMEOUT', `${record.name} (pid ${record.pid}) still present 5 s after SIGKILL (stuck in D state?)`, {
      daemon: record.name,
      pid: record.pid,
    });
  }
  return 'killed';
}
