/**
 * One description of every QEMU device, used by both the command line (cold plug) and QMP (hot
 * plug): QEMU's `-device drv,k=v` and `device_add {driver, k: v}` take the same properties, as do
 * `-netdev`/`netdev_add`, `-blockdev`/`blockdev-add` and `-object`/`object-add`. A device spec
 * becomes an ordered list of parts (backends first, the frontend last); cmdline.ts serialises them,
 * the driver sends them and pushes the inverse of each. Host facts are decided before (the vhost
 * answer is in the spec; a block source says whether it is a file or a host device).
 */
import type {
  BlockSpec,
  DeviceSpec,
  FsVhostUserSpec,
  NetMacvtapSpec,
  NetTapSpec,
  NetVhostUserSpec,
  PmemSpec,
  VfioSpec,
} from '../../../host/device-specs.js';
import { KataError } from '../../../host/errors.js';

type Props = Record<string, unknown>;

/** A part of a device, in the order it must be created (and undone in reverse). */
export type QemuPart =
  | { kind: 'chardev-socket'; id: string; path: string }
  | { kind: 'object'; props: Props & { 'qom-type': string; id: string } }
  | { kind: 'netdev'; props: Props & { type: string; id: string } }
  | { kind: 'blockdev'; props: Props & { driver: string; 'node-name': string } }
  | { kind: 'device'; props: Props & { driver: string; id: string } };

/** Where the frontend goes: a PCI slot on a bus (a root bus slot, or slot 0 of a root port), a SCSI target, or nowhere (memory devices). */
export type Placement = { kind: 'pci'; bus: string; slot: number } | { kind: 'scsi'; bus: string; scsiId: number } | { kind: 'none' };

export interface DeviceContext {
  /** Pass a file to QEMU as an open fd (cold plug only); returns the fd number QEMU sees. */
  passFd?: (path: string, purpose: string) => number;
  /** A file's size (memory backends of pmem devices). */
  sizeBytes: (path: string) => number;
}

/** A QEMU id (letters, digits, '-', '.', '_', starting with a letter) made from a spec id. */
export function qemuId(prefix: string, id: string): string {
  return `${prefix}-${id.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

export const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** The placement properties of a frontend. */
function placed(p: Placement): Props {
  if (p.kind === 'pci') return { bus: p.bus, addr: p.bus === 'pcie.0' ? `0x${hex2(p.slot)}` : String(p.slot) };
  if (p.kind === 'scsi') return { bus: p.bus, 'scsi-id': p.scsiId, lun: 0 };
  return {};
}

function netParts(d: NetTapSpec | NetMacvtapSpec | NetVhostUserSpec, p: Placement, ctx: DeviceContext): QemuPart[] {
  const netdev = qemuId('net', d.id);
  const queues = Math.max(1, d.queues);
  const parts: QemuPart[] = [];
  if (d.kind === 'net-tap') {
    parts.push({
      kind: 'netdev',
      props: {
        type: 'tap',
        id: netdev,
        ifname: d.ifname,
        script: 'no',
        downscript: 'no',
        ...(d.vhost ? { vhost: true } : {}),
        ...(queues > 1 ? { queues } : {}),
      },
    });
  } else if (d.kind === 'net-macvtap') {
    if (!ctx.passFd) {
      throw new KataError(
        'E_UNSUPPORTED',
        `hotplug of macvtap ${d.ifname}: QEMU needs the tap as an fd sent over QMP (SCM_RIGHTS), which this runtime cannot send; attach macvtap endpoints before the VM starts`,
        { id: d.id },
      );
    }
    const pass = ctx.passFd;
    const tapFds = Array.from({ length: queues }, (_v, i) => pass(d.devPath, `macvtap ${d.ifname} queue ${i}`));
    const vhostFds = d.vhost
      ? Array.from({ length: queues }, (_v, i) => pass('/dev/vhost-net', `vhost-net for ${d.ifname} queue ${i}`))
      : [];
    parts.push({
      kind: 'netdev',
      props: {
        type: 'tap',
        id: netdev,
        ...(queues > 1 ? { fds: tapFds.join(':') } : { fd: String(tapFds[0]) }),
        ...(d.vhost ? { vhost: true, ...(queues > 1 ? { vhostfds: vhostFds.join(':') } : { vhostfd: String(vhostFds[0]) }) } : {}),
      },
    });
  } else {
    const chr = qemuId('char', d.id);
    parts.push({ kind: 'chardev-socket', id: chr, path: d.socket });
    parts.push({
      kind: 'netdev',
      props: { type: 'vhost-user', id: netdev, chardev: chr, vhostforce: true, ...(queues > 1 ? { queues } : {}) },
    });
  }
  parts.push({
    kind: 'device',
    props: {
      driver: 'virtio-net-pci',
      id: qemuId('dev', d.id),
      netdev,
      mac: d.mac,
      ...placed(p),
      ...(queues > 1 ? { mq: true, vectors: 2 * queues + 2 } : {}),
      romfile: '',
    },
  });
  return parts;
}

/** The blockdev node of a block source (raw/qcow2 over file, host_device or nbd). */
export function blockNode(d: BlockSpec): Props & { driver: string; 'node-name': string } {
  const node = qemuId('drive', d.id);
  const s = d.source;
  const c = d.cache;
  const cache = c?.set ? { cache: { direct: c.direct, 'no-flush': c.noFlush } } : {};
  let file: Props;
  if (s.kind === 'nbd') {
    file = {
      driver: 'nbd',
      server:
        s.server.type === 'unix'
          ? { type: 'unix', path: s.server.path }
          : { type: 'inet', host: s.server.host, port: String(s.server.port) },
      export: s.export,
      ...(s.reconnectDelaySec !== undefined ? { 'reconnect-delay': s.reconnectDelaySec } : {}),
      ...(s.openTimeoutSec !== undefined ? { 'open-timeout': s.openTimeoutSec } : {}),
    };
  } else {
    file = { driver: s.kind === 'host-device' ? 'host_device' : 'file', filename: s.path, ...(c?.aio ? { aio: c.aio } : {}) };
  }
  return {
    driver: d.format,
    'node-name': node,
    'read-only': d.readonly,
    ...cache,
    file: { ...file, 'node-name': `${node}-file`, 'read-only': d.readonly, ...cache },
  };
}

function blockParts(d: BlockSpec, p: Placement): QemuPart[] {
  const node = blockNode(d);
  const qdev = qemuId('dev', d.id);
  const device: QemuPart =
    d.driver === 'virtio-scsi'
      ? { kind: 'device', props: { driver: 'scsi-hd', id: qdev, drive: node['node-name'], ...placed(p) } }
      : {
          kind: 'device',
          props: {
            driver: 'virtio-blk-pci',
            id: qdev,
            drive: node['node-name'],
            ...placed(p),
            ...(d.readonly ? { 'share-rw': true } : {}),
          },
        };
  return [{ kind: 'blockdev', props: node }, device];
}

function pmemParts(d: PmemSpec, ctx: DeviceContext): QemuPart[] {
  const mem = qemuId('mem', d.id);
  return [
    {
      kind: 'object',
      props: {
        'qom-type': 'memory-backend-file',
        id: mem,
        'mem-path': d.path,
        size: ctx.sizeBytes(d.path),
        share: true,
        ...(d.readonly ? { readonly: true } : {}),
      },
    },
    { kind: 'device', props: { driver: 'nvdimm', id: qemuId('dev', d.id), memdev: mem, ...(d.readonly ? { unarmed: true } : {}) } },
  ];
}

function fsParts(d: FsVhostUserSpec, p: Placement): QemuPart[] {
  const chr = qemuId('char', d.id);
  return [
    { kind: 'chardev-socket', id: chr, path: d.socket },
    {
      kind: 'device',
      props: { driver: 'vhost-user-fs-pci', id: qemuId('dev', d.id), chardev: chr, tag: d.tag, 'queue-size': d.queueSize, ...placed(p) },
    },
  ];
}

function vfioParts(d: VfioSpec, p: Placement): QemuPart[] {
  return [{ kind: 'device', props: { driver: 'vfio-pci', id: qemuId('dev', d.id), host: d.bdf, ...placed(p) } }];
}

/** The parts of one device at a placement. */
export function qemuDevice(d: DeviceSpec, p: Placement, ctx: DeviceContext): QemuPart[] {
  switch (d.kind) {
    case 'net-tap':
    case 'net-macvtap':
    case 'net-vhost-user':
      return netParts(d, p, ctx);
    case 'block':
      return blockParts(d, p);
    case 'pmem':
      return pmemParts(d, ctx);
    case 'fs-vhost-user':
      return fsParts(d, p);
    case 'vfio':
      return vfioParts(d, p);
  }
}

/** What kind of place a device needs. */
export function placementKind(d: DeviceSpec): 'pci' | 'scsi' | 'none' {
  if (d.kind === 'pmem') return 'none';
  if (d.kind === 'block' && d.driver === 'virtio-scsi') return 'scsi';
  return 'pci';
}
