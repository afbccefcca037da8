import { statSync } from 'node:fs';
import type { DeviceSpec, PmemSpec } from '../../../host/device-specs.js';
import { KataError } from '../../../host/errors.js';
import { AGENT_PORT_NAME } from '../../../guest/agent/protocol.js';
import type { QemuConfig } from '../../config/types.js';
import type { VmResources } from '../hypervisor.js';
import { hex2, placementKind, qemuDevice, type DeviceContext, type Placement, type QemuPart } from './devices.js';

/**
 * The QEMU command line for a sandbox VM (cold plug): the machine from the driver configuration
 * and the VM resources, each device from the one device builder (devices.ts) that QMP hotplug uses
 * too. Pure: what it needs from the host (file sizes) comes in `host`, so tests compare argv for
 * given inputs.
 *
 * Layout on the q35 root bus (pcie.0), slots given in order so guest PCI paths are predictable:
 *   agent virtio-serial, virtio-rng, the guest image (read-only virtio-blk, or an NVDIMM off the bus),
 *   the virtio-scsi controller (when a device or block_device_driver wants it), virtio-fs devices,
 *   network devices, block devices, VFIO devices, then `pcie_root_port` root ports for hotplug (one
 *   per slot, function 0, so a hotplugged device's path is "<root port slot>/00").
 * Guest RAM is a shared file mapping (memory-backend-file on /dev/shm, share=on): vhost-user devices
 * (virtio-fs, vhost-user-net) read guest memory from another process. mem-path is the directory, so
 * QEMU creates an already-unlinked file: nothing is left behind however QEMU ends.
 * Files QEMU gets as open fds (macvtap queues, vhost-net) are listed in `fds`: entry i must be open in
 * QEMU as fd 3+i (the spawner passes them in its stdio array).
 */

export interface QemuHostFacts {
  sizeBytes(path: string): number;
}

export function realHostFacts(): QemuHostFacts {
  return { sizeBytes: (p) => statSync(p).size };
}

interface QemuPaths {
  qmp: string;
  /** Socket chardev of the agent's virtserialport (QEMU is the server). */
  agent: string;
  /** Guest serial console output. */
  console: string;
}

export interface QemuMachine {
  sandboxId: string;
  config: QemuConfig;
  accel: 'kvm' | 'tcg';
  resources: VmResources;
  paths: QemuPaths;
  /** -bios file (firmware.ts); undefined = QEMU's default firmware. */
  firmware?: string;
}

interface PassedFd {
  /** The fd number QEMU sees. */
  fd: number;
  path: string;
  /** What it is for, in logs. */
  purpose: string;
}

/** Where each cold-plugged device went, for guest PCI paths and later unplug. */
export interface PlacedDevice {
  specId: string;
  kind: DeviceSpec['kind'];
  /** The parts QEMU holds for it (unplug removes them newest first). */
  parts: QemuPart[];
  /** Slot on pcie.0. */
  slot?: number;
  /** Kata PCI path ("05"; root bus devices have one component). */
  pciPath?: string;
  /** virtio-scsi address "scsi-id:lun". */
  scsiAddr?: string;
}

export interface RootPort {
  id: string;
  slot: number;
}

interface QemuLayout {
  rootPorts: RootPort[];
  devices: PlacedDevice[];
  /** The virtio-scsi controller id when there is one. */
  scsiController?: string;
}

export interface QemuCommandLine {
  args: string[];
  fds: PassedFd[];
  layout: QemuLayout;
  kernelParams: string[];
}

/** q35: slot 0 is the host bridge, 0x1f the ICH9 LPC/SATA/SMBus functions. */
const FIRST_SLOT = 1;
const LAST_SLOT = 0x1e;
export const SCSI_CONTROLLER_ID = 'scsi0';
const ROOT_PORT_PREFIX = 'rp';

/**
 * Kernel parameters that belong to this machine, not to the guest: the console on the serial port
 * QEMU wires (-serial), `reboot=k panic=1` that with -no-reboot turn a guest panic or reboot into a
 * QEMU exit, and no probing of q35's PS/2 controller. Everything the guest's initramfs reads (root=,
 * rootflags=, ...) comes from the guest kit (VmResources.kernelParams).
 */
export const MACHINE_KERNEL_PARAMS = [
  'console=ttyS0',
  'reboot=k',
  'panic=1',
  'i8042.direct=1',
  'i8042.dumbkbd=1',
  'i8042.nopnp=1',
  'i8042.noaux=1',
];

/** Option value with QEMU's escaping: a literal comma is written twice. */
function optValue(v: string | number | boolean): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return String(v).replace(/,/g, ',,');
}

/** "driver,key=value,..." with values escaped; undefined values are left out. */
function opts(head: string | undefined, kv: Record<string, unknown>): string {
  const parts: string[] = head === undefined ? [] : [head];
  for (const [k, v] of Object.entries(kv)) {
    if (v === undefined) continue;
    if (typeof v === 'object') throw new KataError('E_INTERNAL', `QEMU option ${k} is not a scalar`);
    parts.push(`${k}=${optValue(v as string | number | boolean)}`);
  }
  return parts.join(',');
}

/** A device part as command-line arguments (`-blockdev` takes the same JSON as blockdev-add). */
function partArgs(p: QemuPart): string[] {
  switch (p.kind) {
    case 'chardev-socket':
      return ['-chardev', opts('socket', { id: p.id, path: p.path })];
    case 'object': {
      const { 'qom-type': type, ...rest } = p.props;
      return ['-object', opts(type, rest)];
    }
    case 'netdev': {
      const { type, ...rest } = p.props;
      return ['-netdev', opts(type, rest)];
    }
    case 'blockdev':
      return ['-blockdev', JSON.stringify(p.props)];
    case 'device': {
      const { driver, ...rest } = p.props;
      return ['-device', opts(driver, rest)];
    }
  }
}

class SlotAllocator {
  private next = FIRST_SLOT;
  take(what: string): number {
    if (this.next > LAST_SLOT) {
      throw new KataError(
        'E_UNSUPPORTED',
        `no free PCI slot on pcie.0 for ${what}: ${LAST_SLOT - FIRST_SLOT + 1} slots used; use fewer devices or fewer pcie_root_port`,
        { what },
      );
    }
    return this.next++;
  }
}

const COLD_ORDER: DeviceSpec['kind'][] = ['fs-vhost-user', 'net-tap', 'net-macvtap', 'net-vhost-user', 'block', 'pmem', 'vfio'];

/** Build argv (without the binary) for a sandbox VM. */
export function buildQemuCommandLine(m: QemuMachine, host: QemuHostFacts): QemuCommandLine {
  const cfg = m.config;
  const r = m.resources;
  const args: string[] = [];
  const fds: PassedFd[] = [];
  const slots = new SlotAllocator();
  const layout: QemuLayout = { rootPorts: [], devices: [] };
  const seen = new Set<string>();
  const devCtx: DeviceContext = {
    sizeBytes: host.sizeBytes,
    passFd: (path, purpose) => {
      const fd = 3 + fds.length;
      fds.push({ fd, path, purpose });
      return fd;
    },
  };
  const all = [...(r.image ? [r.image] : []), ...r.devices];
  const pmem = all.filter((d): d is PmemSpec => d.kind === 'pmem');
  const scsi = cfg.blockDeviceDriver === 'virtio-scsi' || all.some((d) => placementKind(d) === 'scsi');

  // Machine, CPU, memory.
  args.push('-name', opts(`sandbox-${m.sandboxId}`, { 'debug-threads': true }));
  args.push('-machine', opts(cfg.machineType, { accel: m.accel, nvdimm: pmem.length > 0 ? true : undefined, 'memory-backend': 'mem0' }));
  args.push('-cpu', [m.accel === 'kvm' ? 'host' : 'max', ...(cfg.cpuFeatures ? [cfg.cpuFeatures] : [])].join(','));
  args.push('-smp', opts(String(r.vcpus), { maxcpus: r.maxVcpus, cores: 1, threads: 1, sockets: r.maxVcpus }));
  // NVDIMMs live in the hotplug memory area: Kata reserves 1 GiB of it for the image, more if larger.
  const pmemBytes = pmem.reduce((a, d) => a + host.sizeBytes(d.path), 0);
  const extraMaxMiB = pmem.length > 0 ? Math.max(1024, Math.ceil(pmemBytes / (1024 * 1024 * 128)) * 128 + 128) : 0;
  const memSlots = Math.max(r.memorySlots, pmem.length);
  if (memSlots > 0) {
    args.push('-m', opts(`${r.memoryMiB}M`, { slots: memSlots, maxmem: `${Math.max(r.maxMemoryMiB, r.memoryMiB) + extraMaxMiB}M` }));
  } else {
    args.push('-m', `${r.memoryMiB}M`);
  }
  args.push('-object', opts('memory-backend-file', { id: 'mem0', size: `${r.memoryMiB}M`, 'mem-path': '/dev/shm', share: true }));

  // Process-level flags.
  args.push('-nographic', '-nodefaults', '-no-user-config', '-no-reboot');
  if (cfg.seccompSandbox !== '') args.push('-sandbox', cfg.seccompSandbox);
  args.push('-qmp', opts(`unix:${m.paths.qmp}`, { server: true, wait: false }));
  args.push('-chardev', opts('file', { id: 'console0', path: m.paths.console }));
  args.push('-serial', 'chardev:console0');

  if (m.firmware !== undefined) args.push('-bios', m.firmware);
  args.push('-kernel', r.kernel);
  if (r.initrd !== undefined) args.push('-initrd', r.initrd);

  // Agent channel.
  args.push('-device', opts('virtio-serial-pci', { id: 'vserial0', bus: 'pcie.0', addr: `0x${hex2(slots.take('virtio-serial'))}` }));
  args.push('-chardev', opts('socket', { id: 'agent0', path: m.paths.agent, server: true, wait: false }));
  args.push('-device', opts('virtserialport', { bus: 'vserial0.0', chardev: 'agent0', name: AGENT_PORT_NAME }));

  // Entropy (entropy_source; Kata's default /dev/urandom).
  const rngSlot = slots.take('virtio-rng');
  args.push('-object', opts('rng-random', { id: 'rng0', filename: cfg.entropySource }));
  args.push('-device', opts('virtio-rng-pci', { id: 'rng0-dev', rng: 'rng0', bus: 'pcie.0', addr: `0x${hex2(rngSlot)}` }));

  let nextScsiId = 0;
  const place = (d: DeviceSpec): void => {
    if (seen.has(d.id)) {
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `device id ${d.id} is used twice in sandbox ${m.sandboxId}; device spec ids must be unique`,
        { id: d.id },
      );
    }
    seen.add(d.id);
    const kind = placementKind(d);
    let p: Placement = { kind: 'none' };
    const placedDev: PlacedDevice = { specId: d.id, kind: d.kind, parts: [] };
    if (kind === 'pci') {
      const slot = slots.take(`${d.kind} ${d.id}`);
      p = { kind: 'pci', bus: 'pcie.0', slot };
      placedDev.slot = slot;
      placedDev.pciPath = hex2(slot);
    } else if (kind === 'scsi') {
      const scsiId = nextScsiId++;
      p = { kind: 'scsi', bus: `${SCSI_CONTROLLER_ID}.0`, scsiId };
      placedDev.scsiAddr = `${scsiId}:0`;
    }
    placedDev.parts = qemuDevice(d, p, devCtx);
    for (const part of placedDev.parts) args.push(...partArgs(part));
    layout.devices.push(placedDev);
  };

  // The guest image first (so a virtio-blk image is the first disk, /dev/vda), then the controller.
  if (r.image) place(r.image);
  if (scsi) {
    const slot = slots.take('the virtio-scsi controller');
    args.push('-device', opts('virtio-scsi-pci', { id: SCSI_CONTROLLER_ID, bus: 'pcie.0', addr: `0x${hex2(slot)}` }));
    layout.scsiController = SCSI_CONTROLLER_ID;
  }
  for (const d of [...r.devices].sort((a, b) => COLD_ORDER.indexOf(a.kind) - COLD_ORDER.indexOf(b.kind))) place(d);

  // Root ports for hotplug, last.
  for (let i = 0; i < r.hotplugSlots; i++) {
    const slot = slots.take(`pcie-root-port ${i}`);
    const id = `${ROOT_PORT_PREFIX}${i}`;
    args.push('-device', opts('pcie-root-port', { id, bus: 'pcie.0', chassis: 1, slot: i + 1, addr: `0x${hex2(slot)}` }));
    layout.rootPorts.push({ id, slot });
  }

  const kernelParams = [...MACHINE_KERNEL_PARAMS, ...r.kernelParams];
  for (const x of kernelParams) {
    if (x === '' || /\s/.test(x)) throw new KataError('E_CONFIG', `kernel parameter ${JSON.stringify(x)} is empty or contains whitespace`);
  }
  args.push('-append', kernelParams.join(' '));

  return { args, fds, layout, kernelParams };
}
