import { EventEmitter } from 'node:events';
import { closeSync, constants as fsc, mkdirSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { killFromRecord, startDaemon, type Daemon } from '../../../host/daemon.js';
import type { BlockSpec, DeviceSpec, NetTapSpec } from '../../../host/device-specs.js';
import { KataError, isKataError } from '../../../host/errors.js';
import type { Logger } from '../../../host/log.js';
import { silentLogger } from '../../../host/log.js';
import type { FaultHook } from '../../../host/plugin.js';
import { sleep } from '../../../host/retry.js';
import { UndoStack } from '../../../host/undo.js';
import { capabilitiesOf, type HypervisorCapabilities } from '../capabilities.js';
import type { HotplugResult, Hypervisor, HypervisorEvents, UnplugOptions, VmRecord, VmSpec, VmStartOptions } from '../types.js';
import { chooseAccel, type AccelDecision } from './accel.js';
import {
  buildQemuCommandLine,
  qemuId,
  realHostFacts,
  type PlacedDevice,
  type QemuCommandLine,
  type QemuHostFacts,
  type RootPort,
} from './cmdline.js';
import { pciPathOf, type QueryPciBus } from './pci-path.js';
import { QmpClient, QmpError } from './qmp-client.js';

/**
 * The QEMU driver: starts QEMU inside the sandbox netns (host/daemon.ts: pdeathsig, pid + start-time
 * record, stderr lines to pino), talks QMP to it, hot-plugs and unplugs devices, stops it.
 *
 * - start: accelerator decision (probe), command line from the device specs, fds opened and passed,
 *   QEMU spawned, QMP connected (giving up at once if QEMU exits). Any failure kills QEMU.
 * - stop: QMP quit, SIGKILL after a grace period (virtiofsd is stopped by the caller afterwards:
 *   Kata's order).
 * - hotplug: net (netdev_add tap by ifname + device_add virtio-net-pci on a free root port), block
 *   (blockdev-add + virtio-blk-pci on a free root port, or scsi-hd on the virtio-scsi controller).
 *   Each step pushes its inverse; a failure part-way undoes the finished steps, newest first.
 * - unplug: device_del, wait for DEVICE_DELETED (timeout), then netdev_del / blockdev-del.
 * - An exit nobody asked for (QEMU crash, guest poweroff) is an 'exit' event with expected = false.
 *
 * Hotplug and unplug are serialised: root port bookkeeping never races.
 */

export interface QemuDriverOptions {
  /** Test hook: called before named steps; throwing there simulates a failure at that step. */
  faults?: FaultHook;
  /** Host facts for the command line (tests); default: the real host. */
  host?: QemuHostFacts;
}

/** Grace between QMP quit and SIGKILL (Kata waits a few seconds too). */
const DEFAULT_STOP_GRACE_MS = 3000;
const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;
/** Linux sun_path is 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;

interface Plugged extends PlacedDevice {
  hot: boolean;
  rootPort?: RootPort;
  scsiId?: number;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

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
  private spec: VmSpec | undefined;
  private cmd: QemuCommandLine | undefined;
  private accelChoice: AccelDecision | undefined;
  private paths: { qmp: string; agent: string; console: string } | undefined;
  private readonly plugged = new Map<string, Plugged>();
  /** Root port id -> DeviceSpec id using it (undefined = free). */
  private readonly rootPortUse = new Map<string, string | undefined>();
  private readonly scsiIdsInUse = new Set<number>();
  private queue: Promise<unknown> = Promise.resolve();
  private stopping = false;
  private readonly host: QemuHostFacts;

  constructor(private readonly opts: QemuDriverOptions = {}) {
    super();
    this.host = opts.host ?? realHostFacts();
  }

  capabilities(): HypervisorCapabilities {
    return capabilitiesOf('qemu');
  }

  get running(): boolean {
    return this.daemon?.running ?? false;
  }

  get pid(): number | undefined {
    return this.daemon?.pid;
  }

  get agentSocket(): string | undefined {
    return this.paths?.agent;
  }

  get consoleLog(): string | undefined {
    return this.paths?.console;
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

  /** Root ports and which device uses each. */
  rootPorts(): { id: string; slot: number; usedBy: string | undefined }[] {
    return (this.cmd?.layout.rootPorts ?? []).map((rp) => ({ ...rp, usedBy: this.rootPortUse.get(rp.id) }));
  }

  /** Where a device is: QEMU ids and its guest PCI path or SCSI address. */
  device(id: string): Readonly<Plugged> | undefined {
    return this.plugged.get(id);
  }

  private async fault(step: string): Promise<void> {
    if (this.opts.faults) await this.opts.faults(step);
  }

  async start(spec: VmSpec, o: VmStartOptions): Promise<void> {
    if (this.daemon) throw new KataError('E_INTERNAL', `sandbox ${spec.sandboxId}: this QEMU driver already started a VM`);
    this.log = o.log.child({ hypervisor: 'qemu' });
    this.spec = spec;
    const cfg = spec.config;
    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    const paths = { qmp: join(spec.runDir, 'qmp.sock'), agent: join(spec.runDir, 'agent.sock'), console: join(spec.runDir, 'console.log') };
    for (const p of [paths.qmp, paths.agent]) {
      if (Buffer.byteLength(p) > MAX_SOCKET_PATH) {
        throw new KataError(
          'E_SOCKET_PATH_TOO_LONG',
          `socket path ${p} is ${Buffer.byteLength(p)} bytes (limit ${MAX_SOCKET_PATH}); use a shorter state_dir`,
          { path: p },
        );
      }
      unlinkQuiet(p); // a stale socket from a dead QEMU would make ours fail to bind
    }
    this.paths = paths;

    this.accelChoice = await chooseAccel({
      choice: cfg.accel,
      qemuPath: cfg.path,
      log: this.log,
      ...(o.accelCacheDir ? { cacheDir: o.accelCacheDir } : {}),
    });
    const cmd = buildQemuCommandLine(
      {
        sandboxId: spec.sandboxId,
        config: cfg,
        accel: this.accelChoice.accel,
        kernel: spec.kernel,
        ...(spec.initrd !== undefined ? { initrd: spec.initrd } : {}),
        ...(spec.image !== undefined ? { image: spec.image } : {}),
        ...(spec.kernelParams ? { kernelParams: spec.kernelParams } : {}),
        devices: spec.devices,
        paths,
        ...(spec.agentDebug ? { agentDebug: true } : {}),
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

    for (const rp of cmd.layout.rootPorts) this.rootPortUse.set(rp.id, undefined);
    for (const dev of cmd.layout.devices) {
      this.plugged.set(dev.specId, { ...dev, hot: false });
      if (dev.scsiAddr) this.scsiIdsInUse.add(Number(dev.scsiAddr.split(':')[0]));
    }
    this.log.info(
      { pid: d.pid, accel: this.accelChoice.accel, devices: spec.devices.length, rootPorts: cmd.layout.rootPorts.length },
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
      const gone = await Promise.race([d.exited.then(() => true), sleep(grace).then(() => false)]);
      if (!gone) {
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
      accel: this.accelChoice.accel,
      controlSocket: this.paths.qmp,
      agentSocket: this.paths.agent,
      consoleLog: this.paths.console,
      files: [this.paths.qmp, this.paths.agent],
    };
  }

  /**
   * Stop a VM known only from its record (the process that started it died): pid + start time
   * checked, SIGTERM (QEMU shuts down cleanly on it), SIGKILL after the grace, files removed.
   */
  static async recover(rec: VmRecord, log: Logger, graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    const outcome = await killFromRecord(rec.daemon, { graceMs, log });
    log.info({ pid: rec.daemon.pid, outcome }, 'QEMU from a record stopped');
    for (const f of rec.files) unlinkQuiet(f);
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private requireRunning(what: string): QmpClient {
    if (!this.qmp || this.qmp.closed || !this.running) {
      throw new KataError('E_DAEMON_CRASHED', `cannot ${what}: QEMU of sandbox ${this.spec?.sandboxId ?? '?'} is not running`);
    }
    return this.qmp;
  }

  hotplug(spec: DeviceSpec): Promise<HotplugResult> {
    return this.serialize(() => this.doHotplug(spec));
  }

  unplug(id: string, opts: UnplugOptions = {}): Promise<void> {
    return this.serialize(() => this.doUnplug(id, opts.timeoutMs ?? DEFAULT_UNPLUG_TIMEOUT_MS));
  }

  private async doHotplug(spec: DeviceSpec): Promise<HotplugResult> {
    const qmp = this.requireRunning(`hotplug ${spec.id}`);
    if (this.plugged.has(spec.id)) {
      throw new KataError('E_INVALID_ARGUMENT', `device ${spec.id} is already plugged into sandbox ${this.spec!.sandboxId}`, {
        id: spec.id,
      });
    }
    const undo = new UndoStack(this.log);
    return undo.guard(async () => {
      switch (spec.kind) {
        case 'net-tap':
          return this.hotplugNetTap(qmp, spec, undo);
        case 'block':
          return this.hotplugBlock(qmp, spec, undo);
        case 'net-macvtap':
          throw new KataError(
            'E_UNSUPPORTED',
            `hotplug of macvtap ${spec.ifname}: QEMU needs the tap as an fd sent over QMP (SCM_RIGHTS), which this runtime cannot send; attach macvtap endpoints before the VM starts`,
            { id: spec.id },
          );
        default:
          throw new KataError(
            'E_UNSUPPORTED',
            `hotplug of ${spec.kind} devices is not supported by the QEMU driver (net-tap and block are); attach it before the VM starts`,
            { id: spec.id, kind: spec.kind },
          );
      }
    });
  }

  private takeRootPort(specId: string, undo: UndoStack): RootPort {
    const rp = this.cmd!.layout.rootPorts.find((p) => this.rootPortUse.get(p.id) === undefined);
    if (!rp) {
      throw new KataError(
        'E_UNSUPPORTED',
        `no free PCIe root port for ${specId}: all ${this.cmd!.layout.rootPorts.length} are in use; raise hypervisor.qemu.pcie_root_port`,
        { id: specId },
      );
    }
    this.rootPortUse.set(rp.id, specId);
    undo.push(`free root port ${rp.id}`, async () => {
      this.rootPortUse.set(rp.id, undefined);
    });
    return rp;
  }

  private async pciPathFor(qmp: QmpClient, qdevId: string, rp: RootPort): Promise<string> {
    try {
      const tree = await qmp.execute<QueryPciBus[]>('query-pci');
      const p = pciPathOf(tree, qdevId);
      if (p) return p;
    } catch (e) {
      this.log.warn({ err: e, device: qdevId }, 'query-pci failed; deriving the PCI path from the root port');
    }
    // Not numbered yet (the guest has not enumerated the port): the device is slot 0 behind it.
    return `${hex2(rp.slot)}/00`;
  }

  private async hotplugNetTap(qmp: QmpClient, d: NetTapSpec, undo: UndoStack): Promise<HotplugResult> {
    const cfg = this.spec!.config;
    const rp = this.takeRootPort(d.id, undo);
    const netdev = qemuId('net', d.id);
    const qdev = qemuId('dev', d.id);
    const queues = Math.max(1, d.queues);
    const vhost = d.vhost && !cfg.disableVhostNet && this.host.vhostNet;
    await qmp.execute('netdev_add', {
      type: 'tap',
      id: netdev,
      ifname: d.ifname,
      script: 'no',
      downscript: 'no',
      ...(vhost ? { vhost: true } : {}),
      ...(queues > 1 ? { queues } : {}),
    });
    undo.push(`netdev_del ${netdev}`, async () => {
      await qmp.execute('netdev_del', { id: netdev });
    });
    await this.fault('hotplug:netdev-added');
    await qmp.execute('device_add', {
      driver: 'virtio-net-pci',
      id: qdev,
      netdev,
      mac: d.mac,
      bus: rp.id,
      addr: '0',
      romfile: '',
      ...(queues > 1 ? { mq: true, vectors: 2 * queues + 2 } : {}),
    });
    undo.push(`device_del ${qdev}`, () => this.deviceDelAndWait(qmp, qdev, DEFAULT_UNPLUG_TIMEOUT_MS));
    await this.fault('hotplug:device-added');
    const pciPath = await this.pciPathFor(qmp, qdev, rp);
    await this.fault('hotplug:path-resolved');
    this.plugged.set(d.id, { specId: d.id, kind: d.kind, qdevId: qdev, netdevId: netdev, pciPath, hot: true, rootPort: rp });
    this.log.info({ id: d.id, tap: d.ifname, rootPort: rp.id, pciPath }, 'network device hot-plugged');
    return { id: d.id, deviceId: qdev, guestPciPath: pciPath };
  }

  private async hotplugBlock(qmp: QmpClient, d: BlockSpec, undo: UndoStack): Promise<HotplugResult> {
    if (d.driver === 'nvdimm') {
      throw new KataError('E_UNSUPPORTED', `hotplug of NVDIMM ${d.id}: QEMU cannot unplug an NVDIMM, so it is cold-plug only here`, {
        id: d.id,
      });
    }
    const scsi = this.cmd!.layout.scsiController;
    if (d.driver === 'virtio-scsi' && !scsi) {
      throw new KataError(
        'E_UNSUPPORTED',
        `block device ${d.id} wants virtio-scsi but the VM has no virtio-scsi controller; set hypervisor.qemu.block_device_driver = "virtio-scsi"`,
        { id: d.id },
      );
    }
    const node = qemuId('drive', d.id);
    const qdev = qemuId('dev', d.id);
    const fileDriver = this.host.isBlockDevice(d.path) ? 'host_device' : 'file';
    await qmp.execute('blockdev-add', {
      driver: d.format,
      'node-name': node,
      'read-only': d.readonly,
      file: { driver: fileDriver, filename: d.path, 'read-only': d.readonly },
    });
    undo.push(`blockdev-del ${node}`, async () => {
      await qmp.execute('blockdev-del', { 'node-name': node });
    });
    await this.fault('hotplug:blockdev-added');
    if (d.driver === 'virtio-scsi') {
      let scsiId = 0;
      while (this.scsiIdsInUse.has(scsiId)) scsiId++;
      if (scsiId > 255) throw new KataError('E_UNSUPPORTED', `no free SCSI target id on ${scsi} for ${d.id}`, { id: d.id });
      this.scsiIdsInUse.add(scsiId);
      undo.push(`free scsi-id ${scsiId}`, async () => {
        this.scsiIdsInUse.delete(scsiId);
      });
      await qmp.execute('device_add', { driver: 'scsi-hd', id: qdev, drive: node, bus: `${scsi}.0`, 'scsi-id': scsiId, lun: 0 });
      undo.push(`device_del ${qdev}`, () => this.deviceDelAndWait(qmp, qdev, DEFAULT_UNPLUG_TIMEOUT_MS));
      await this.fault('hotplug:device-added');
      const scsiAddr = `${scsiId}:0`;
      this.plugged.set(d.id, { specId: d.id, kind: d.kind, qdevId: qdev, nodeName: node, scsiAddr, scsiId, hot: true });
      this.log.info({ id: d.id, path: d.path, scsiAddr }, 'block device hot-plugged (virtio-scsi)');
      return { id: d.id, deviceId: qdev, scsiAddr };
    }
    const rp = this.takeRootPort(d.id, undo);
    await qmp.execute('device_add', {
      driver: 'virtio-blk-pci',
      id: qdev,
      drive: node,
      bus: rp.id,
      addr: '0',
      ...(d.readonly ? { 'share-rw': true } : {}),
    });
    undo.push(`device_del ${qdev}`, () => this.deviceDelAndWait(qmp, qdev, DEFAULT_UNPLUG_TIMEOUT_MS));
    await this.fault('hotplug:device-added');
    const pciPath = await this.pciPathFor(qmp, qdev, rp);
    await this.fault('hotplug:path-resolved');
    this.plugged.set(d.id, { specId: d.id, kind: d.kind, qdevId: qdev, nodeName: node, pciPath, hot: true, rootPort: rp });
    this.log.info({ id: d.id, path: d.path, rootPort: rp.id, pciPath }, 'block device hot-plugged (virtio-blk)');
    return { id: d.id, deviceId: qdev, guestPciPath: pciPath };
  }

  /**
   * device_del and wait for DEVICE_DELETED of that device. A device already gone is fine; a device
   * whose unplug is already pending is waited for again.
   */
  private async deviceDelAndWait(qmp: QmpClient, qdevId: string, timeoutMs: number): Promise<void> {
    const deleted = qmp.waitEvent('DEVICE_DELETED', (e) => e.data?.device === qdevId, timeoutMs);
    deleted.catch(() => {}); // handled below; never an unhandled rejection when device_del fails first
    try {
      await qmp.execute('device_del', { id: qdevId });
    } catch (e) {
      if (e instanceof QmpError && e.qmpClass === 'DeviceNotFound') return;
      if (!(e instanceof QmpError && /already in the process of unplug/i.test(e.desc))) throw e;
    }
    try {
      await deleted;
    } catch (e) {
      if (isKataError(e, 'E_TIMEOUT')) {
        throw new KataError(
          'E_TIMEOUT',
          `the guest did not release ${qdevId} within ${timeoutMs} ms (no DEVICE_DELETED); it is still plugged, unplug can be retried`,
          { device: qdevId, timeoutMs },
          { cause: e },
        );
      }
      throw e;
    }
  }

  private async doUnplug(id: string, timeoutMs: number): Promise<void> {
    const p = this.plugged.get(id);
    if (!p) {
      this.log.debug({ id }, 'unplug: no such device (already unplugged)');
      return;
    }
    const qmp = this.requireRunning(`unplug ${id}`);
    if (!p.hot && p.scsiAddr === undefined) {
      // Cold-plugged on pcie.0 (q35's root bus has no hotplug), the guest image, or an NVDIMM.
      const why =
        p.kind === 'image'
          ? 'is the guest image'
          : p.slot !== undefined
            ? 'was cold-plugged on the q35 root bus, which cannot hot-unplug'
            : 'is an NVDIMM, which QEMU cannot unplug';
      throw new KataError('E_UNSUPPORTED', `device ${id} ${why}; it goes away with the VM`, { id });
    }
    await this.deviceDelAndWait(qmp, p.qdevId, timeoutMs);
    await this.fault('unplug:device-deleted');
    // The frontend is gone: from here the device counts as unplugged even if a backend lingers.
    this.plugged.delete(id);
    if (p.rootPort) this.rootPortUse.set(p.rootPort.id, undefined);
    if (p.scsiId !== undefined) this.scsiIdsInUse.delete(p.scsiId);
    try {
      if (p.netdevId) await qmp.execute('netdev_del', { id: p.netdevId });
      if (p.nodeName) await qmp.execute('blockdev-del', { 'node-name': p.nodeName });
    } catch (e) {
      if (!(e instanceof QmpError && (e.qmpClass === 'DeviceNotFound' || /not found|Failed to find/i.test(e.desc)))) throw e;
    }
    this.log.info({ id, device: p.qdevId }, 'device unplugged');
  }
}
