import { EventEmitter } from 'node:events';
import { closeSync, constants as fsc, mkdirSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { killFromRecord, startDaemon, type Daemon } from '../../../host/daemon.js';
import type { DeviceSpec } from '../../../host/device-specs.js';
import { KataError } from '../../../host/errors.js';
import { silentLogger, type Logger } from '../../../host/log.js';
import { mark } from '../../../host/marks.js';
import { validateSocketPath } from '../../../host/names.js';
import type { FaultHook } from '../../../host/plugin.js';
import type { QemuConfig } from '../../config/types.js';
import { capabilitiesOf } from '../capabilities.js';
import type {
  AgentEndpoint,
  HotplugResult,
  Hypervisor,
  HypervisorDriver,
  HypervisorEvents,
  UnplugOptions,
  VmRecord,
  VmSpec,
  VmStartOptions,
} from '../hypervisor.js';
import { chooseAccel, type AccelDecision } from './accel.js';
import { buildQemuCommandLine, realHostFacts, type QemuCommandLine, type QemuHostFacts } from './cmdline.js';
import { QemuDeviceManager } from './device-manager.js';
import { firmwareFor } from './firmware.js';
import { QmpClient, QmpError } from './qmp-client.js';

/**
 * The QEMU driver: starts QEMU inside the sandbox netns (host/daemon.ts: pdeathsig, pid + start-time
 * record, stderr lines to pino), talks QMP to it, hot-plugs and unplugs devices (device-manager.ts),
 * stops it.
 *
 * - start: accelerator decision (probe), command line from the VM resources, fds opened and passed,
 *   QEMU spawned, QMP connected (giving up at once if QEMU exits). Any failure kills QEMU.
 * - stop: QMP quit, SIGKILL after a grace period (virtiofsd is stopped by the caller afterwards:
 *   Kata's order).
 * - An exit nobody asked for (QEMU crash, guest poweroff) is an 'exit' event with expected = false.
 */

export interface QemuDriverOptions {
  /** Test hook: called before named steps; throwing there simulates a failure at that step. */
  faults?: FaultHook;
  /** Host facts for the command line (tests); default: the real host. */
  host?: QemuHostFacts;
}

/** Grace between QMP quit and SIGKILL (Kata waits a few seconds too). */
export const DEFAULT_STOP_GRACE_MS = 3000;

function unlinkQuiet(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    // already gone
  }
}

export class QemuHypervisor extends EventEmitter<HypervisorEvents> implements Hypervisor {
  readonly kind = 'qemu' as const;

  private log: Logger = silentLogger();
  private daemon: Daemon | undefined;
  private qmp: QmpClient | undefined;
  private sandboxId = '?';
  private cmd: QemuCommandLine | undefined;
  private accelChoice: AccelDecision | undefined;
  private paths: { qmp: string; agent: string; console: string } | undefined;
  private devices: QemuDeviceManager | undefined;
  private stopping = false;
  private readonly host: QemuHostFacts;

  constructor(private readonly opts: QemuDriverOptions = {}) {
    super();
    this.host = opts.host ?? realHostFacts();
  }

  get running(): boolean {
    return this.daemon?.running ?? false;
  }

  get pid(): number | undefined {
    return this.daemon?.pid;
  }

  get accel(): AccelDecision | undefined {
    return this.accelChoice;
  }

  /** The command line QEMU was started with (argv without the binary, and the passed fds). */
  get commandLine(): QemuCommandLine | undefined {
    return this.cmd;
  }

  /** The QMP connection (for callers that need a query the driver does not wrap). */
  get monitor(): QmpClient | undefined {
    return this.qmp;
  }

  agentEndpoint(): AgentEndpoint {
    if (!this.paths) throw new KataError('E_INTERNAL', 'QEMU driver: agentEndpoint() before start()');
    return { kind: 'unix', path: this.paths.agent };
  }

  /** Root ports and which device uses each. */
  rootPorts(): { id: string; slot: number; usedBy: string | undefined }[] {
    return this.devices?.rootPorts() ?? [];
  }

  /** Where a device is: its QEMU parts and its guest PCI path or SCSI address. */
  device(id: string): ReturnType<QemuDeviceManager['device']> {
    return this.devices?.device(id);
  }

  private async fault(step: string): Promise<void> {
    if (this.opts.faults) await this.opts.faults(step);
  }

  async start(spec: VmSpec, o: VmStartOptions): Promise<void> {
    if (this.daemon) throw new KataError('E_INTERNAL', `sandbox ${spec.sandboxId}: this QEMU driver already started a VM`);
    this.log = o.log.child({ hypervisor: 'qemu' });
    this.sandboxId = spec.sandboxId;
    const cfg = spec.driverConfig as QemuConfig;
    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    const paths = { qmp: join(spec.runDir, 'qmp.sock'), agent: join(spec.runDir, 'agent.sock'), console: join(spec.runDir, 'console.log') };
    for (const p of [paths.qmp, paths.agent]) {
      validateSocketPath(p, 'QEMU control socket', 'use a shorter state_dir');
      unlinkQuiet(p); // a stale socket from a dead QEMU would make ours fail to bind
    }
    this.paths = paths;

    this.accelChoice = await chooseAccel({
      choice: cfg.accel,
      qemuPath: cfg.path,
      log: this.log,
      ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}),
    });
    const firmware = firmwareFor(cfg.firmware, cfg.path);
    const cmd = buildQemuCommandLine(
      {
        sandboxId: spec.sandboxId,
        config: cfg,
        accel: this.accelChoice.accel,
        resources: spec.resources,
        paths,
        ...(firmware !== undefined ? { firmware } : {}),
      },
      this.host,
    );
    this.cmd = cmd;

    // Files QEMU gets as open fds: ours are closed as soon as QEMU has its copies.
    const opened: number[] = [];
    try {
      for (const f of cmd.fds) {
        try {
          opened.push(openSync(f.path, fsc.O_RDWR));
        } catch (e) {
          throw new KataError(
            'E_DAEMON_START',
            `cannot open ${f.path} for QEMU (${f.purpose}): ${(e as Error).message}`,
            { path: f.path },
            { cause: e },
          );
        }
      }
      this.log.debug({ argv: cmd.args, fds: cmd.fds }, 'starting QEMU');
      mark('qemu.spawn');
      this.daemon = await startDaemon({
        name: 'qemu',
        file: cfg.path,
        args: cmd.args,
        log: this.log,
        ...(spec.netns ? { netnsPath: spec.netns.path } : {}),
        extraFds: opened,
      });
    } finally {
      for (const fd of opened) closeSync(fd);
    }
    const d = this.daemon;
    mark('qemu.spawned');
    d.on('exit', (info) => {
      const expected = info.expected || this.stopping;
      if (!expected) this.log.error({ code: info.code, signal: info.signal, stderr: d.stderrTail(10) }, 'QEMU exited unexpectedly');
      this.emit('exit', { code: info.code, signal: info.signal, expected });
    });

    try {
      await this.fault('start:spawned');
      const ac = new AbortController();
      void d.exited.then((x) => ac.abort(`QEMU exited (${x.signal ?? `status ${x.code}`}) before its QMP socket answered`));
      try {
        this.qmp = await QmpClient.connect(paths.qmp, { log: this.log, connectTimeoutMs: o.controlTimeoutMs ?? 10_000, signal: ac.signal });
      } catch (e) {
        // A QMP failure during start is often QEMU exiting (it may have accepted the connection
        // before it found a bad argument): give its exit a moment to be seen, then say why.
        await Promise.race([d.exited, sleep(1000)]);
        if (!d.running) {
          await d.exited;
          const tail = d.stderrTail(5).join(' | ');
          throw new KataError(
            'E_DAEMON_START',
            `QEMU for sandbox ${spec.sandboxId} exited at start${tail ? `: ${tail}` : ''}`,
            { sandbox: spec.sandboxId, stderr: d.stderrTail(20) },
            { cause: e },
          );
        }
        throw e;
      }
      mark('qemu.qmp');
      this.qmp.on('event', (e) => {
        if (e.event === 'GUEST_PANICKED' || (e.event === 'SHUTDOWN' && !this.stopping))
          this.log.warn({ event: e.event, data: e.data }, `QEMU event ${e.event}`);
        this.emit('event', e);
      });
      await this.fault('start:qmp');
    } catch (e) {
      await this.kill();
      throw e;
    }
    this.devices = new QemuDeviceManager(
      () => this.requireRunning('change devices'),
      cmd.layout.rootPorts,
      cmd.layout.devices,
      cmd.layout.scsiController,
      this.log,
      this.opts.faults,
    );
    this.log.info(
      { pid: d.pid, accel: this.accelChoice.accel, devices: spec.resources.devices.length, rootPorts: cmd.layout.rootPorts.length },
      'QEMU started',
    );
  }

  /** SIGKILL at once and forget the connection (start failures). */
  private async kill(): Promise<void> {
    this.stopping = true;
    await this.qmp?.close().catch(() => {});
    if (this.daemon?.running) await this.daemon.stop({ graceMs: 0 });
    this.removeSockets();
  }

  private removeSockets(): void {
    if (!this.paths) return;
    unlinkQuiet(this.paths.qmp);
    unlinkQuiet(this.paths.agent);
  }

  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    const d = this.daemon;
    if (!d) return;
    const grace = opts.graceMs ?? DEFAULT_STOP_GRACE_MS;
    this.stopping = true;
    d.expectExit();
    if (d.running && this.qmp && !this.qmp.closed) {
      try {
        await this.qmp.execute('quit', undefined, { timeoutMs: Math.max(100, Math.min(grace, 2000)) });
      } catch (e) {
        if (!(e instanceof QmpError && e.qmpClass === 'Disconnected')) this.log.warn({ err: e }, 'QMP quit failed; QEMU will be killed');
      }
    }
    if (d.running) {
      const isGone = await Promise.race([d.exited.then(() => true), sleep(grace).then(() => false)]);
      if (!isGone) {
        this.log.warn({ graceMs: grace }, 'QEMU still running after QMP quit; sending SIGKILL');
        await d.stop({ graceMs: 0 });
      }
    }
    await d.exited;
    await this.qmp?.close().catch(() => {});
    this.removeSockets();
  }

  record(): VmRecord {
    if (!this.daemon || !this.paths || !this.accelChoice) throw new KataError('E_INTERNAL', 'QEMU driver: record() before start()');
    return {
      kind: 'qemu',
      daemon: this.daemon.record(),
      agent: { kind: 'unix', path: this.paths.agent },
      consoleLog: this.paths.console,
      files: [this.paths.qmp, this.paths.agent],
      details: { accel: this.accelChoice.accel, qmp: this.paths.qmp },
    };
  }

  /**
   * Stop a VM known only from its record (the process that started it died): pid + start time
   * checked, SIGTERM (QEMU shuts down cleanly on it), SIGKILL after the grace, files removed.
   */
  static async recover(rec: VmRecord, log: Logger, graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    const outcome = await killFromRecord(rec.daemon, { graceMs, log });
    log.info({ qemuPid: rec.daemon.pid, outcome }, 'QEMU from a record stopped');
    for (const f of rec.files) unlinkQuiet(f);
  }

  private requireRunning(what: string): QmpClient {
    if (!this.qmp || this.qmp.closed || !this.running) {
      throw new KataError('E_DAEMON_CRASHED', `cannot ${what}: QEMU of sandbox ${this.sandboxId} is not running`);
    }
    return this.qmp;
  }

  hotplug(spec: DeviceSpec): Promise<HotplugResult> {
    if (!this.devices) return Promise.reject(this.notStarted(`hotplug ${spec.id}`));
    return this.devices.hotplug(spec, this.sandboxId);
  }

  unplug(id: string, opts: UnplugOptions = {}): Promise<void> {
    if (!this.devices) return Promise.reject(this.notStarted(`unplug ${id}`));
    return this.devices.unplug(id, opts.timeoutMs);
  }

  private notStarted(what: string): KataError {
    return new KataError('E_DAEMON_CRASHED', `cannot ${what}: QEMU of sandbox ${this.sandboxId} is not running`);
  }
}

export const qemuDriver: HypervisorDriver = {
  kind: 'qemu',
  capabilities: () => capabilitiesOf('qemu'),
  create: (opts = {}) => new QemuHypervisor(opts.faults ? { faults: opts.faults } : {}),
  recover: (rec, log) => QemuHypervisor.recover(rec, log),
};
