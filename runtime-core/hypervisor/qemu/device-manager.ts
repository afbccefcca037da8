/**
 * Hotplug and unplug on a running QEMU over QMP. A device is the same list of parts the command
 * line uses (devices.ts): each part is sent in order (netdev_add, blockdev-add, object-add,
 * device_add) and its inverse pushed, so a failure part-way undoes the finished parts newest first.
 * Unplug is device_del, then waiting for DEVICE_DELETED (bounded), then the backends in reverse.
 * Calls are serialised, so root port and SCSI id bookkeeping never races.
 */
import type { DeviceSpec } from '../../../host/device-specs.js';
import { KataError, isKataError } from '../../../host/errors.js';
import type { Logger } from '../../../host/log.js';
import type { FaultHook } from '../../../host/plugin.js';
import { UndoStack } from '../../../host/undo.js';
import type { HotplugResult } from '../hypervisor.js';
import type { PlacedDevice, RootPort } from './cmdline.js';
import { hex2, placementKind, qemuDevice, qemuId, type Placement, type QemuPart } from './devices.js';
import { pciPathOf, type QueryPciBus } from './pci-path.js';
import { QmpError, type QmpClient } from './qmp-client.js';

export const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;

interface Plugged extends PlacedDevice {
  hot: boolean;
  rootPort?: RootPort;
  scsiId?: number;
}

/** The QMP command that adds a part, and the one that removes it. */
function addCommand(p: QemuPart): [string, Record<string, unknown>] {
  switch (p.kind) {
    case 'netdev':
      return ['netdev_add', p.props];
    case 'blockdev':
      return ['blockdev-add', p.props];
    case 'object':
      return ['object-add', p.props];
    case 'device':
      return ['device_add', p.props];
    case 'chardev-socket':
      // Only vhost-user devices have one; their daemons are attached before the VM starts.
      throw new KataError('E_UNSUPPORTED', `hotplug of a vhost-user device (${p.id}) is not supported; attach it before the VM starts`);
  }
}

function removeCommand(p: Exclude<QemuPart, { kind: 'device' }>): [string, Record<string, unknown>] {
  switch (p.kind) {
    case 'netdev':
      return ['netdev_del', { id: p.props.id }];
    case 'blockdev':
      return ['blockdev-del', { 'node-name': p.props['node-name'] }];
    case 'object':
      return ['object-del', { id: p.props.id }];
    case 'chardev-socket':
      return ['chardev-remove', { id: p.id }];
  }
}

/** QMP's default command deadline (qmp-client.ts), which most parts finish well within. */
const COMMAND_TIMEOUT_MS = 10_000;

/**
 * A blockdev-add of an NBD node keeps retrying its first connection for `open-timeout` seconds
 * before it answers: its deadline is that plus the usual one.
 */
function commandDeadline(p: QemuPart): { timeoutMs?: number } {
  if (p.kind !== 'blockdev') return {};
  const file = p.props.file as { driver?: unknown; 'open-timeout'?: unknown } | undefined;
  const open = file?.driver === 'nbd' && typeof file['open-timeout'] === 'number' ? file['open-timeout'] : 0;
  return open > 0 ? { timeoutMs: open * 1000 + COMMAND_TIMEOUT_MS } : {};
}

const gone = (e: unknown): boolean =>
  e instanceof QmpError && (e.qmpClass === 'DeviceNotFound' || /not found|Failed to find|does not exist/i.test(e.desc));

export class QemuDeviceManager {
  private readonly plugged = new Map<string, Plugged>();
  /** Root port id -> DeviceSpec id using it (undefined = free). */
  private readonly rootPortUse = new Map<string, string | undefined>();
  private readonly scsiIdsInUse = new Set<number>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly qmp: () => QmpClient,
    private readonly ports: readonly RootPort[],
    cold: readonly PlacedDevice[],
    private readonly scsiController: string | undefined,
    private readonly log: Logger,
    private readonly faults?: FaultHook,
  ) {
    for (const rp of ports) this.rootPortUse.set(rp.id, undefined);
    for (const d of cold) {
      this.plugged.set(d.specId, { ...d, hot: false });
      if (d.scsiAddr) this.scsiIdsInUse.add(Number(d.scsiAddr.split(':')[0]));
    }
  }

  rootPorts(): { id: string; slot: number; usedBy: string | undefined }[] {
    return this.ports.map((rp) => ({ ...rp, usedBy: this.rootPortUse.get(rp.id) }));
  }

  device(id: string): Readonly<Plugged> | undefined {
    return this.plugged.get(id);
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private async fault(step: string): Promise<void> {
    if (this.faults) await this.faults(step);
  }

  hotplug(spec: DeviceSpec, sandboxId: string): Promise<HotplugResult> {
    return this.serialize(() => new UndoStack(this.log).guard((undo) => this.doHotplug(spec, sandboxId, undo)));
  }

  unplug(id: string, timeoutMs = DEFAULT_UNPLUG_TIMEOUT_MS): Promise<void> {
    return this.serialize(() => this.doUnplug(id, timeoutMs));
  }

  private place(spec: DeviceSpec, undo: UndoStack): { placement: Placement; rootPort?: RootPort; scsiId?: number } {
    const kind = placementKind(spec);
    if (kind === 'none') {
      throw new KataError(
        'E_UNSUPPORTED',
        `hotplug of ${spec.kind} device ${spec.id}: QEMU cannot unplug an NVDIMM, so it is cold-plug only here`,
        {
          id: spec.id,
        },
      );
    }
    if (kind === 'scsi') {
      const bus = this.scsiController;
      if (!bus) {
        throw new KataError(
          'E_UNSUPPORTED',
          `block device ${spec.id} wants virtio-scsi but the VM has no virtio-scsi controller; set hypervisor.qemu.block_device_driver = "virtio-scsi"`,
          { id: spec.id },
        );
      }
      let scsiId = 0;
      while (this.scsiIdsInUse.has(scsiId)) scsiId++;
      if (scsiId > 255) throw new KataError('E_UNSUPPORTED', `no free SCSI target id on ${bus} for ${spec.id}`, { id: spec.id });
      this.scsiIdsInUse.add(scsiId);
      undo.push(`free scsi-id ${scsiId}`, async () => {
        this.scsiIdsInUse.delete(scsiId);
      });
      return { placement: { kind: 'scsi', bus: `${bus}.0`, scsiId }, scsiId };
    }
    const rp = this.ports.find((p) => this.rootPortUse.get(p.id) === undefined);
    if (!rp) {
      throw new KataError(
        'E_UNSUPPORTED',
        `no free PCIe root port for ${spec.id}: all ${this.ports.length} are in use; raise hypervisor.qemu.pcie_root_port`,
        { id: spec.id },
      );
    }
    this.rootPortUse.set(rp.id, spec.id);
    undo.push(`free root port ${rp.id}`, async () => {
      this.rootPortUse.set(rp.id, undefined);
    });
    return { placement: { kind: 'pci', bus: rp.id, slot: 0 }, rootPort: rp };
  }

  private async doHotplug(spec: DeviceSpec, sandboxId: string, undo: UndoStack): Promise<HotplugResult> {
    const qmp = this.qmp();
    if (this.plugged.has(spec.id)) {
      throw new KataError('E_INVALID_ARGUMENT', `device ${spec.id} is already plugged into sandbox ${sandboxId}`, { id: spec.id });
    }
    const where = this.place(spec, undo);
    // Build every part (and refuse what cannot be hot-plugged) before the first command is sent.
    const parts = qemuDevice(spec, where.placement, {
      sizeBytes: () => {
        throw new KataError('E_UNSUPPORTED', `hotplug of ${spec.kind} ${spec.id} is not supported`);
      },
    });
    const commands = parts.map((p) => [p, addCommand(p)] as const);
    for (const [part, [cmd, args]] of commands) {
      await qmp.execute(cmd, args, commandDeadline(part));
      if (part.kind === 'device')
        undo.push(`device_del ${part.props.id}`, () => this.deviceDelAndWait(qmp, part.props.id, DEFAULT_UNPLUG_TIMEOUT_MS));
      else {
        const [rm, rmArgs] = removeCommand(part);
        undo.push(`${rm} ${JSON.stringify(rmArgs)}`, async () => {
          await qmp.execute(rm, rmArgs);
        });
      }
      await this.fault(`hotplug:${part.kind}-added`);
    }
    const qdev = qemuId('dev', spec.id);
    const plugged: Plugged = { specId: spec.id, kind: spec.kind, parts, hot: true };
    const result: HotplugResult = { id: spec.id, deviceId: qdev };
    if (where.rootPort) {
      plugged.rootPort = where.rootPort;
      plugged.pciPath = await this.pciPathFor(qmp, qdev, where.rootPort);
      result.guestPciPath = plugged.pciPath;
      await this.fault('hotplug:path-resolved');
    }
    if (where.scsiId !== undefined) {
      plugged.scsiId = where.scsiId;
      plugged.scsiAddr = `${where.scsiId}:0`;
      result.scsiAddr = plugged.scsiAddr;
    }
    this.plugged.set(spec.id, plugged);
    this.log.info(
      { id: spec.id, kind: spec.kind, rootPort: where.rootPort?.id, pciPath: plugged.pciPath, scsiAddr: plugged.scsiAddr },
      'device hot-plugged',
    );
    return result;
  }

  private async pciPathFor(qmp: QmpClient, qdevId: string, rp: RootPort): Promise<string> {
    try {
      const p = pciPathOf(await qmp.execute<QueryPciBus[]>('query-pci'), qdevId);
      if (p) return p;
    } catch (e) {
      this.log.warn({ err: e, device: qdevId }, 'query-pci failed; deriving the PCI path from the root port');
    }
    // Not numbered yet (the guest has not enumerated the port): the device is slot 0 behind it.
    return `${hex2(rp.slot)}/00`;
  }

  /** device_del and wait for DEVICE_DELETED. A device already gone is fine; a pending unplug is waited for again. */
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
    const qmp = this.qmp();
    if (!p.hot && p.scsiAddr === undefined) {
      // Cold-plugged on pcie.0 (q35's root bus has no hotplug), the guest image, or an NVDIMM.
      const why =
        p.specId === 'image'
          ? 'is the guest image'
          : p.slot !== undefined
            ? 'was cold-plugged on the q35 root bus, which cannot hot-unplug'
            : 'is an NVDIMM, which QEMU cannot unplug';
      throw new KataError('E_UNSUPPORTED', `device ${id} ${why}; it goes away with the VM`, { id });
    }
    const front = p.parts.find((x) => x.kind === 'device');
    if (front?.kind === 'device') await this.deviceDelAndWait(qmp, front.props.id, timeoutMs);
    await this.fault('unplug:device-deleted');
    // The frontend is gone: from here the device counts as unplugged even if a backend lingers.
    this.plugged.delete(id);
    if (p.rootPort) this.rootPortUse.set(p.rootPort.id, undefined);
    if (p.scsiId !== undefined) this.scsiIdsInUse.delete(p.scsiId);
    for (const part of [...p.parts].reverse()) {
      if (part.kind === 'device') continue;
      const [cmd, args] = removeCommand(part);
      try {
        await qmp.execute(cmd, args);
      } catch (e) {
        if (!gone(e)) throw e;
      }
    }
    this.log.info({ id }, 'device unplugged');
  }
}
