import { statSync } from 'node:fs';
import type {
  BlockSpec,
  DeviceSpec,
  FsVhostUserSpec,
  NetMacvtapSpec,
  NetTapSpec,
  NetVhostUserSpec,
  VfioSpec,
} from '../../../host/device-specs.js';
import { KataError } from '../../../host/errors.js';
import type { QemuConfig } from '../../config/types.js';

/**
 * The QEMU command line for a sandbox VM, built from the configuration and the device specs the
 * plugins produced (cold plug). Pure: what it needs from the host (vhost-net present, block device
 * or file, file sizes) comes in `host`, so tests compare argv for given inputs.
 *
 * Layout on the q35 root bus (pcie.0), slots given in order so guest PCI paths are predictable:
 *   agent virtio-serial, virtio-rng, the image disk (read-only virtio-blk, unless NVDIMM), the
 *   virtio-scsi controller (block_device_driver = virtio-scsi), virtio-fs devices, network devices,
 *   block devices, VFIO devices, then `pcie_root_port` root ports for hotplug (one per slot, function
 *   0, so a hotplugged device's path is "<root port slot>/00").
 * Guest RAM is a shared file mapping (memory-backend-file on /dev/shm, share=on): vhost-user devices
 * (virtio-fs, vhost-user-net) read guest memory from another process. mem-path is the directory, so
 * QEMU creates an already-unlinked file: nothing is left behind however QEMU ends.
 * Files QEMU gets as open fds (macvtap queues, vhost-net) are listed in `fds`: entry i must be open in
 * QEMU as fd 3+i (the spawner passes them in its stdio array).
 */

export interface QemuHostFacts {
  /** /dev/vhost-net exists (vhost=on only then). */
  vhostNet: boolean;
  isBlockDevice(path: string): boolean;
  sizeBytes(path: string): number;
}

export function realHostFacts(): QemuHostFacts {
  let vhost = false;
  try {
    vhost = statSync('/dev/vhost-net').isCharacterDevice();
  } catch {
    vhost = false;
  }
  return {
    vhostNet: vhost,
    isBlockDevice: (p) => {
      try {
        return statSync(p).isBlockDevice();
      } catch {
        return false;
      }
    },
    sizeBytes: (p) => statSync(p).size,
  };
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
  kernel: string;
  initrd?: string;
  /** Guest rootfs image (read-only). */
  image?: string;
  /** Kernel parameters from the caller (e.g. the guest kit's); config.kernelParams come after them. */
  kernelParams?: string[];
  devices: DeviceSpec[];
  paths: QemuPaths;
  /** Agent debug (adds kata.debug=1 to the kernel command line). */
  agentDebug?: boolean;
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
  kind: DeviceSpec['kind'] | 'image';
  /** QEMU device id (device_del). */
  qdevId: string;
  netdevId?: string;
  /** Top block node name (blockdev-del). */
  nodeName?: string;
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
  /** Next free scsi-id on the controller. */
  nextScsiId: number;
  /** Image device name inside the guest. */
  rootDevice?: string;
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
const AGENT_PORT_NAME = 'agent.0';
const SCSI_CONTROLLER_ID = 'scsi0';
const ROOT_PORT_PREFIX = 'rp';

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** Option value with QEMU's escaping: a literal comma is written twice. */
function optValue(v: string | number | boolean): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return String(v).replace(/,/g, ',,');
}

/** "driver,key=value,..." with values escaped; undefined values are left out. */
function opts(head: string | undefined, kv: Record<string, string | number | boolean | undefined>): string {
  const parts: string[] = head === undefined ? [] : [head];
  for (const [k, v] of Object.entries(kv)) if (v !== undefined) parts.push(`${k}=${optValue(v)}`);
  return parts.join(',');
}

/** A QEMU id (letters, digits, '-', '.', '_', starting with a letter) made from a spec id. */
export function qemuId(prefix: string, id: string): string {
  return `${prefix}-${id.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/**
 * The runtime's own kernel parameters (before the caller's and the file's), in line with what the
 * guest kit's initramfs reads (root=, rootfstype=, rootflags=, kata.debug=) and Kata's boot-time
 * savers: no PS/2 probing, no crypto self-tests, trusted TSC, expedited RCU, RDRAND trusted for the
 * CRNG (so node's getrandom() in the guest does not block); `reboot=k panic=1` with -no-reboot turn a
 * guest panic or reboot into a QEMU exit.
 */
function baseKernelParams(cfg: QemuConfig, rootDevice: string | undefined, nvdimmRoot: boolean, agentDebug: boolean): string[] {
  const p = ['console=ttyS0'];
  if (!cfg.enableDebug) p.push('quiet');
  else p.push('debug', 'loglevel=7');
  if (rootDevice !== undefined) {
    p.push(`root=${rootDevice}`, 'rootfstype=ext4', 'ro');
    if (nvdimmRoot) p.push('rootflags=dax,errors=remount-ro');
  }
  p.push(
    'reboot=k',
    'panic=1',
    'tsc=reliable',
    'no_timer_check',
    'noreplace-smp',
    'rcupdate.rcu_expedited=1',
    'cryptomgr.notests',
    'i8042.direct=1',
    'i8042.dumbkbd=1',
    'i8042.nopnp=1',
    'i8042.noaux=1',
    'random.trust_cpu=on',
    'net.ifnames=0',
  );
  if (agentDebug) p.push('kata.debug=1');
  return p;
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

function blockNodes(nodeName: string, path: string, format: 'raw' | 'qcow2', readonly: boolean, hostDevice: boolean): string {
  return opts(undefined, {
    driver: format,
    'node-name': nodeName,
    'read-only': readonly,
    'file.driver': hostDevice ? 'host_device' : 'file',
    'file.filename': path,
    'file.node-name': `${nodeName}-file`,
    'file.read-only': readonly,
  });
}

/** Build argv (without the binary) for a sandbox VM. */
export function buildQemuCommandLine(m: QemuMachine, host: QemuHostFacts): QemuCommandLine {
  const cfg = m.config;
  const args: string[] = [];
  const fds: PassedFd[] = [];
  const slots = new SlotAllocator();
  const layout: QemuLayout = { rootPorts: [], devices: [], nextScsiId: 0 };
  const seen = new Set<string>();
  const uniq = (id: string): string => {
    if (seen.has(id))
      throw new KataError('E_INVALID_ARGUMENT', `device id ${id} is used twice in sandbox ${m.sandboxId}; device spec ids must be unique`, {
        id,
      });
    seen.add(id);
    return id;
  };
  const passFd = (path: string, purpose: string): number => {
    const fd = 3 + fds.length;
    fds.push({ fd, path, purpose });
    return fd;
  };

  const nvdimmImage = m.image !== undefined && !cfg.disableImageNvdimm;
  const nvdimmSpecs = m.devices.filter((d): d is BlockSpec => d.kind === 'block' && d.driver === 'nvdimm');
  const useNvdimm = nvdimmImage || nvdimmSpecs.length > 0;

  // Machine, CPU, memory.
  args.push('-name', opts(`sandbox-${m.sandboxId}`, { 'debug-threads': true }));
  args.push('-machine', opts(cfg.machineType, { accel: m.accel, nvdimm: useNvdimm ? true : undefined, 'memory-backend': 'mem0' }));
  args.push('-cpu', m.accel === 'kvm' ? 'host' : 'max');
  args.push('-smp', opts(String(cfg.vcpus), { maxcpus: cfg.maxVcpus, cores: 1, threads: 1, sockets: cfg.maxVcpus }));
  let extraMaxMiB = 0;
  if (useNvdimm) {
    const bytes = (nvdimmImage ? host.sizeBytes(m.image!) : 0) + nvdimmSpecs.reduce((a, d) => a + host.sizeBytes(d.path), 0);
    // Kata reserves 1 GiB of address space for the image NVDIMM; more if the devices are larger.
    extraMaxMiB = Math.max(1024, Math.ceil(bytes / (1024 * 1024 * 128)) * 128 + 128);
  }
  const slotsNeeded = Math.max(cfg.memorySlots, useNvdimm ? nvdimmSpecs.length + (nvdimmImage ? 1 : 0) : 0);
  if (slotsNeeded > 0) {
    const maxMem = Math.max(cfg.maxMemoryMiB, cfg.memoryMiB) + extraMaxMiB;
    args.push('-m', opts(`${cfg.memoryMiB}M`, { slots: slotsNeeded, maxmem: `${maxMem}M` }));
  } else {
    args.push('-m', `${cfg.memoryMiB}M`);
  }
  args.push('-object', opts('memory-backend-file', { id: 'mem0', size: `${cfg.memoryMiB}M`, 'mem-path': '/dev/shm', share: true }));

  // Process-level flags.
  args.push('-nographic', '-nodefaults', '-no-user-config', '-no-reboot');
  args.push('-qmp', opts(`unix:${m.paths.qmp}`, { server: true, wait: false }));
  args.push('-chardev', opts('file', { id: 'console0', path: m.paths.console }));
  args.push('-serial', 'chardev:console0');

  // Kernel.
  args.push('-kernel', m.kernel);
  if (m.initrd !== undefined) args.push('-initrd', m.initrd);

  // Agent channel.
  const vserialSlot = slots.take('virtio-serial');
  args.push('-device', opts('virtio-serial-pci', { id: 'vserial0', bus: 'pcie.0', addr: `0x${hex2(vserialSlot)}` }));
  args.push('-chardev', opts('socket', { id: 'agent0', path: m.paths.agent, server: true, wait: false }));
  args.push('-device', opts('virtserialport', { bus: 'vserial0.0', chardev: 'agent0', name: AGENT_PORT_NAME }));

  // Entropy (Kata's default source).
  const rngSlot = slots.take('virtio-rng');
  args.push('-object', opts('rng-random', { id: 'rng0', filename: '/dev/urandom' }));
  args.push('-device', opts('virtio-rng-pci', { id: 'rng0-dev', rng: 'rng0', bus: 'pcie.0', addr: `0x${hex2(rngSlot)}` }));

  // Guest image.
  let rootDevice: string | undefined;
  if (m.image !== undefined) {
    if (nvdimmImage) {
      args.push(
        '-object',
        opts('memory-backend-file', { id: 'mem-image', 'mem-path': m.image, size: host.sizeBytes(m.image), share: true, readonly: true }),
      );
      args.push('-device', opts('nvdimm', { id: uniq('dev-image'), memdev: 'mem-image', unarmed: true }));
      layout.devices.push({ specId: 'image', kind: 'image', qdevId: 'dev-image' });
      rootDevice = '/dev/pmem0';
    } else {
      const slot = slots.take('the guest image');
      args.push('-blockdev', blockNodes('drive-image', m.image, 'raw', true, host.isBlockDevice(m.image)));
      args.push(
        '-device',
        opts('virtio-blk-pci', { id: uniq('dev-image'), drive: 'drive-image', bus: 'pcie.0', addr: `0x${hex2(slot)}`, 'share-rw': true }),
      );
      layout.devices.push({ specId: 'image', kind: 'image', qdevId: 'dev-image', nodeName: 'drive-image', slot, pciPath: hex2(slot) });
      rootDevice = '/dev/vda';
    }
    layout.rootDevice = rootDevice;
  }

  // virtio-scsi controller.
  if (cfg.blockDeviceDriver === 'virtio-scsi' || m.devices.some((d) => d.kind === 'block' && d.driver === 'virtio-scsi')) {
    const slot = slots.take('the virtio-scsi controller');
    args.push('-device', opts('virtio-scsi-pci', { id: SCSI_CONTROLLER_ID, bus: 'pcie.0', addr: `0x${hex2(slot)}` }));
    layout.scsiController = SCSI_CONTROLLER_ID;
  }

  const order: DeviceSpec['kind'][] = ['fs-vhost-user', 'net-tap', 'net-macvtap', 'net-vhost-user', 'block', 'vfio'];
  const sorted = [...m.devices].sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
  for (const d of sorted) {
    switch (d.kind) {
      case 'fs-vhost-user':
        addFs(d);
        break;
      case 'net-tap':
      case 'net-macvtap':
      case 'net-vhost-user':
        addNet(d);
        break;
      case 'block':
        addBlock(d);
        break;
      case 'vfio':
        addVfio(d);
        break;
    }
  }

  function addFs(d: FsVhostUserSpec): void {
    const qdev = uniq(qemuId('dev', d.id));
    const chr = qemuId('char', d.id);
    const slot = slots.take(`virtio-fs ${d.id}`);
    args.push('-chardev', opts('socket', { id: chr, path: d.socket }));
    args.push(
      '-device',
      opts('vhost-user-fs-pci', { id: qdev, chardev: chr, tag: d.tag, 'queue-size': d.queueSize, bus: 'pcie.0', addr: `0x${hex2(slot)}` }),
    );
    layout.devices.push({ specId: d.id, kind: d.kind, qdevId: qdev, slot, pciPath: hex2(slot) });
  }

  function addNet(d: NetTapSpec | NetMacvtapSpec | NetVhostUserSpec): void {
    const qdev = uniq(qemuId('dev', d.id));
    const netdev = qemuId('net', d.id);
    const queues = Math.max(1, d.queues);
    const slot = slots.take(`network device ${d.id}`);
    if (d.kind === 'net-tap') {
      const vhost = d.vhost && !cfg.disableVhostNet && host.vhostNet;
      args.push(
        '-netdev',
        opts('tap', {
          id: netdev,
          ifname: d.ifname,
          script: 'no',
          downscript: 'no',
          vhost: vhost ? true : undefined,
          queues: queues > 1 ? queues : undefined,
        }),
      );
    } else if (d.kind === 'net-macvtap') {
      const vhost = d.vhost && !cfg.disableVhostNet && host.vhostNet;
      const tapFds = Array.from({ length: queues }, (_v, i) => passFd(d.devPath, `macvtap ${d.ifname} queue ${i}`));
      const vhostFds = vhost
        ? Array.from({ length: queues }, (_v, i) => passFd('/dev/vhost-net', `vhost-net for ${d.ifname} queue ${i}`))
        : [];
      args.push(
        '-netdev',
        opts('tap', {
          id: netdev,
          ...(queues > 1 ? { fds: tapFds.join(':') } : { fd: tapFds[0] }),
          vhost: vhost ? true : undefined,
          ...(vhost ? (queues > 1 ? { vhostfds: vhostFds.join(':') } : { vhostfd: vhostFds[0] }) : {}),
        }),
      );
    } else {
      const chr = qemuId('char', d.id);
      args.push('-chardev', opts('socket', { id: chr, path: d.socket }));
      args.push('-netdev', opts('vhost-user', { id: netdev, chardev: chr, vhostforce: true, queues: queues > 1 ? queues : undefined }));
    }
    args.push(
      '-device',
      opts('virtio-net-pci', {
        id: qdev,
        netdev,
        mac: d.mac,
        bus: 'pcie.0',
        addr: `0x${hex2(slot)}`,
        mq: queues > 1 ? true : undefined,
        vectors: queues > 1 ? 2 * queues + 2 : undefined,
        romfile: '',
      }),
    );
    layout.devices.push({ specId: d.id, kind: d.kind, qdevId: qdev, netdevId: netdev, slot, pciPath: hex2(slot) });
  }

  function addBlock(d: BlockSpec): void {
    const qdev = uniq(qemuId('dev', d.id));
    const node = qemuId('drive', d.id);
    if (d.driver === 'nvdimm') {
      const mem = qemuId('mem', d.id);
      args.push(
        '-object',
        opts('memory-backend-file', {
          id: mem,
          'mem-path': d.path,
          size: host.sizeBytes(d.path),
          share: true,
          readonly: d.readonly ? true : undefined,
        }),
      );
      args.push('-device', opts('nvdimm', { id: qdev, memdev: mem, unarmed: d.readonly ? true : undefined }));
      layout.devices.push({ specId: d.id, kind: d.kind, qdevId: qdev });
      return;
    }
    args.push('-blockdev', blockNodes(node, d.path, d.format, d.readonly, host.isBlockDevice(d.path)));
    if (d.driver === 'virtio-scsi') {
      const scsiId = layout.nextScsiId++;
      args.push('-device', opts('scsi-hd', { id: qdev, drive: node, bus: `${SCSI_CONTROLLER_ID}.0`, 'scsi-id': scsiId, lun: 0 }));
      layout.devices.push({ specId: d.id, kind: d.kind, qdevId: qdev, nodeName: node, scsiAddr: `${scsiId}:0` });
      return;
    }
    const slot = slots.take(`block device ${d.id}`);
    args.push(
      '-device',
      opts('virtio-blk-pci', { id: qdev, drive: node, bus: 'pcie.0', addr: `0x${hex2(slot)}`, 'share-rw': d.readonly ? true : undefined }),
    );
    layout.devices.push({ specId: d.id, kind: d.kind, qdevId: qdev, nodeName: node, slot, pciPath: hex2(slot) });
  }

  function addVfio(d: VfioSpec): void {
    const qdev = uniq(qemuId('dev', d.id));
    const slot = slots.take(`VFIO device ${d.id}`);
    args.push('-device', opts('vfio-pci', { id: qdev, host: d.bdf, bus: 'pcie.0', addr: `0x${hex2(slot)}` }));
    layout.devices.push({ specId: d.id, kind: d.kind, qdevId: qdev, slot, pciPath: hex2(slot) });
  }

  // Root ports for hotplug, last.
  for (let i = 0; i < cfg.pcieRootPorts; i++) {
    const slot = slots.take(`pcie-root-port ${i}`);
    const id = `${ROOT_PORT_PREFIX}${i}`;
    args.push('-device', opts('pcie-root-port', { id, bus: 'pcie.0', chassis: 1, slot: i + 1, addr: `0x${hex2(slot)}` }));
    layout.rootPorts.push({ id, slot });
  }

  const kernelParams = [
    ...baseKernelParams(cfg, rootDevice, nvdimmImage, m.agentDebug ?? false),
    ...(m.kernelParams ?? []),
    ...cfg.kernelParams,
  ];
  args.push('-append', kernelParams.join(' '));

  return { args, fds, layout, kernelParams };
}
