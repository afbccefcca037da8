import { EventEmitter } from 'node:events';
import { chmodSync, chownSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { killFromRecord, startDaemon, type Daemon, type DaemonExit, type DaemonRecord, type KillOutcome } from '../host/daemon.js';
import { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import type { RestartPolicy } from './config.js';
import { detectFlavor, type Flavor, type FlavorKind } from './flavor.js';
import { isListening, listeningInodes, waitListening } from './readiness.js';
import { daemonPidFiles, virtiofsdArgs, type VirtiofsdArgsInput } from './virtiofsd-args.js';

/**
 * One virtiofsd: started from config in the spelling its binary understands, ready when its socket
 * listens, watched for crashes (reported at once as a 'crash' event; restarted only when the
 * policy allows), stopped with TERM then KILL, and found again from its state after a crash of
 * ours.
 */

/** Linux sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

/** What the daemon is started with: its arguments (sourceDir = the sandbox's `shared`) and how it is run. */
export interface VirtiofsdOptions extends VirtiofsdArgsInput {
  daemonPath: string;
  startTimeoutMs: number;
  stopGraceMs: number;
  restart: RestartPolicy;
  pdeathsig: boolean;
  socketOwner?: { uid: number; gid: number } | undefined;
  log: Logger;
}

/** JSON persisted by the runtime core; enough for recover(). */
export interface VirtiofsdState {
  daemonPath: string;
  flavor: FlavorKind;
  version: string;
  socketPath: string;
  sourceDir: string;
  args: string[];
  daemon: DaemonRecord | undefined;
  /** Files the daemon leaves behind (its own pid/lock files). */
  pidFiles: string[];
}

export interface CrashInfo {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Last stderr lines of the daemon. */
  stderr: string[];
  /** True when the restart policy will start a new daemon; false = the VM must be stopped. */
  willRestart: boolean;
  /** Set when a restart was attempted and failed. */
  error?: KataError;
}

export function checkSocketPath(socketPath: string): void {
  const n = Buffer.byteLength(socketPath, 'utf8');
  if (n > MAX_SOCKET_PATH) {
    throw new KataError(
      'E_SOCKET_PATH_TOO_LONG',
      `virtiofs.socketPath ${socketPath} is ${n} bytes; unix sockets allow at most ${MAX_SOCKET_PATH}: choose a shorter run directory`,
      { key: 'virtiofs.socketPath', path: socketPath, bytes: n },
    );
  }
}

function removeIf(path: string, want: 'socket' | 'file'): void {
  try {
    const st = lstatSync(path);
    if (want === 'socket' ? st.isSocket() : st.isFile()) unlinkSync(path);
  } catch {
    /* already gone */
  }
}

export class VirtiofsDaemon extends EventEmitter<{ crash: [CrashInfo]; restart: [DaemonRecord] }> {
  private daemon: Daemon | undefined;
  private stopping = false;
  private exitExpected = false;
  private stopPromise: Promise<void> | undefined;
  private restarting: Promise<void> | undefined;
  private readonly restarts: number[] = [];

  private constructor(
    private readonly opts: VirtiofsdOptions,
    readonly flavor: Flavor,
    readonly args: readonly string[],
  ) {
    super();
  }

  /**
   * Validate, start, and wait until the socket listens. Errors: E_SOCKET_PATH_TOO_LONG, E_CONFIG
   * (missing/unsupported binary, cache or sandbox mode the binary lacks, missing source dir),
   * E_DAEMON_START (exit before listening or no socket within startTimeoutMs, with stderr lines).
   */
  static async start(opts: VirtiofsdOptions): Promise<VirtiofsDaemon> {
    checkSocketPath(opts.socketPath);
    let isDir = false;
    try {
      isDir = statSync(opts.sourceDir).isDirectory();
    } catch {
      /* missing */
    }
    if (!isDir) {
      throw new KataError('E_CONFIG', `virtiofs.sourceDir ${opts.sourceDir} does not exist or is not a directory`, {
        key: 'virtiofs.sourceDir',
        path: opts.sourceDir,
      });
    }
    const flavor = await detectFlavor(opts.daemonPath);
    const args = virtiofsdArgs(flavor, { ...opts });
    if (isListening(opts.socketPath)) {
      throw new KataError(
        'E_DAEMON_START',
        `virtiofsd: socket ${opts.socketPath} is already in use by a listening process (another sandbox or a stale daemon: recover it first)`,
        { socket: opts.socketPath },
      );
    }
    mkdirSync(dirname(opts.socketPath), { recursive: true, mode: 0o700 });
    const v = new VirtiofsDaemon(opts, flavor, args);
    await v.spawnReady();
    return v;
  }

  private async spawnReady(): Promise<void> {
    const { opts } = this;
    removeIf(opts.socketPath, 'socket');
    // A dying predecessor (e.g. the sandboxed child of a killed daemon) may still list the old path.
    const exclude = listeningInodes(opts.socketPath);
    const started = performance.now();
    const d = await startDaemon({ name: 'virtiofsd', file: opts.daemonPath, args: this.args, log: opts.log, pdeathsig: opts.pdeathsig });
    const outcome = await waitListening(opts.socketPath, { timeoutMs: opts.startTimeoutMs, gone: () => !d.running, exclude });
    if (outcome !== 'listening') {
      let why: string;
      if (outcome === 'exited') {
        const e = await d.exited;
        why = `exited (${e.signal ?? `code ${e.code}`}) before listening on ${opts.socketPath}`;
      } else {
        await d.stop({ graceMs: 0 });
        why = `did not listen on ${opts.socketPath} within ${opts.startTimeoutMs} ms (killed)`;
      }
      this.cleanupFiles();
      const tail = d.stderrTail(8);
      throw new KataError(
        'E_DAEMON_START',
        `virtiofsd ${opts.daemonPath} ${why}${tail.length ? `; stderr: ${tail.join(' | ')}` : '; no stderr output'}`,
        { daemon: 'virtiofsd', argv: [opts.daemonPath, ...this.args], stderr: tail },
      );
    }
    try {
      chmodSync(opts.socketPath, 0o600);
      if (opts.socketOwner) chownSync(opts.socketPath, opts.socketOwner.uid, opts.socketOwner.gid);
    } catch (e) {
      await d.stop({ graceMs: 0 });
      this.cleanupFiles();
      throw new KataError(
        'E_DAEMON_START',
        `virtiofsd: cannot set mode/owner of ${opts.socketPath}: ${(e as Error).message}`,
        { socket: opts.socketPath },
        { cause: e },
      );
    }
    this.daemon = d;
    // Through the promise: an exit that already happened (a client that came and went) still counts.
    void d.exited.then((info) => this.onExit(d, info));
    opts.log.info(
      { daemonPid: d.pid, socket: opts.socketPath, flavor: this.flavor.kind, readyMs: Math.round(performance.now() - started) },
      'virtiofsd ready',
    );
  }

  private onExit(d: Daemon, info: DaemonExit): void {
    if (info.expected || this.stopping || d !== this.daemon) return;
    if (this.exitExpected) {
      this.opts.log.info({ daemonPid: d.pid, code: info.code, signal: info.signal }, 'virtiofsd exited after its VMM went away');
      return;
    }
    const now = Date.now();
    const { maxRestarts, windowMs } = this.opts.restart;
    while (this.restarts.length > 0 && this.restarts[0]! < now - windowMs) this.restarts.shift();
    const willRestart = this.restarts.length < maxRestarts;
    const crash: CrashInfo = { pid: d.pid, code: info.code, signal: info.signal, stderr: d.stderrTail(10), willRestart };
    this.opts.log.error({ ...crash }, willRestart ? 'virtiofsd crashed; restarting' : 'virtiofsd crashed; the VM must be stopped');
    this.emit('crash', crash);
    if (!willRestart) return;
    this.restarts.push(now);
    this.restarting = (async () => {
      try {
        await this.spawnReady();
        if (this.stopping) return;
        this.emit('restart', this.daemon!.record());
      } catch (e) {
        const err = e instanceof KataError ? e : new KataError('E_DAEMON_START', `virtiofsd restart failed: ${(e as Error).message}`);
        this.opts.log.error({ err }, 'virtiofsd restart failed; the VM must be stopped');
        if (!this.stopping) this.emit('crash', { ...crash, willRestart: false, error: err });
      } finally {
        this.restarting = undefined;
      }
    })();
  }

  /**
   * Call before stopping the VMM: the C daemon exits by itself when its vhost-user client leaves,
   * and that exit is then not a crash. stop() is still needed afterwards (files, or a daemon that stays).
   */
  expectExit(): void {
    this.exitExpected = true;
    this.daemon?.expectExit();
  }

  get pid(): number | undefined {
    return this.daemon?.pid;
  }

  get running(): boolean {
    return this.daemon?.running ?? false;
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  /** The daemon's last stderr lines. */
  stderrTail(n?: number): string[] {
    return this.daemon?.stderrTail(n) ?? [];
  }

  record(): DaemonRecord | undefined {
    return this.daemon?.record();
  }

  state(): VirtiofsdState {
    return {
      daemonPath: this.opts.daemonPath,
      flavor: this.flavor.kind,
      version: this.flavor.version,
      socketPath: this.opts.socketPath,
      sourceDir: this.opts.sourceDir,
      args: [...this.args],
      daemon: this.record(),
      pidFiles: daemonPidFiles(this.flavor, this.opts.socketPath),
    };
  }

  private cleanupFiles(): void {
    removeIf(this.opts.socketPath, 'socket');
    for (const f of daemonPidFiles(this.flavor, this.opts.socketPath)) removeIf(f, 'file');
  }

  /**
   * Stop (after the VMM has stopped): SIGTERM, SIGKILL after stopGraceMs, then remove the socket
   * and pid files. Idempotent; harmless after a crash.
   */
  stop(graceMs = this.opts.stopGraceMs): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      if (this.restarting) await this.restarting;
      if (this.daemon) await this.daemon.stop({ graceMs, termRepeatMs: 100 });
      this.cleanupFiles();
    })();
    return this.stopPromise;
  }

  /**
   * Clean up after a crashed runtime from persisted state: stop the daemon if the recorded pid is
   * still the same process, and remove its socket and pid files (unless something else listens there).
   */
  static async recover(state: VirtiofsdState, opts: { graceMs?: number; log?: Logger } = {}): Promise<KillOutcome> {
    const outcome = state.daemon
      ? await killFromRecord(state.daemon, { graceMs: opts.graceMs ?? 2000, termRepeatMs: 100, ...(opts.log ? { log: opts.log } : {}) })
      : 'not-running';
    if (!isListening(state.socketPath)) removeIf(state.socketPath, 'socket');
    for (const f of state.pidFiles) removeIf(f, 'file');
    opts.log?.info({ socket: state.socketPath, outcome }, 'virtiofsd recovered');
    return outcome;
  }
}
