/**
 * The smallest QEMU command line that boots the guest kit with its agent reachable: what tests use
 * directly, and the pieces (kernel/initrd/append, rootfs drive, agent port, entropy) that the
 * runtime's QEMU driver folds into its own command line.
 */
import type { GuestKit } from './index.js';
import { guestKernelCmdline, type GuestCmdlineOptions } from './cmdline.js';
import { AGENT_PORT_NAME } from '../../guest/agent/protocol.js';

/**
 * CPU model for TCG. "max" exposes RDRAND, so the guest kernel's CRNG is ready at once
 * (random.trust_cpu=on) and node's blocking getrandom() at start-up returns immediately; with the
 * default qemu64 model the agent waits seconds for jitter entropy.
 */
const TCG_CPU = 'max';

/** -kernel/-initrd/-append for the kit. */
function kitBootArgs(kit: Pick<GuestKit, 'kernel' | 'initrd'>, cmdline: GuestCmdlineOptions = {}): string[] {
  return ['-kernel', kit.kernel, '-initrd', kit.initrd, '-append', guestKernelCmdline(cmdline)];
}

/** The rootfs image as a read-only virtio-blk disk (it becomes /dev/vda when it is the first disk). */
function kitRootfsArgs(kit: Pick<GuestKit, 'rootfs'>, id = 'rootfs'): string[] {
  return ['-drive', `file=${kit.rootfs},if=none,id=${id},format=raw,readonly=on`, '-device', `virtio-blk-pci,drive=${id}`];
}

/** The agent's virtio-serial port on a unix socket QEMU listens on. */
function agentPortArgs(socketPath: string, id = 'agent'): string[] {
  if (/,/.test(socketPath)) throw new Error(`agent socket path ${socketPath} contains a comma (QEMU option syntax)`);
  return [
    '-chardev',
    `socket,id=${id},path=${socketPath},server=on,wait=off`,
    '-device',
    'virtio-serial-pci',
    '-device',
    `virtserialport,chardev=${id},name=${AGENT_PORT_NAME}`,
  ];
}

/** An entropy source for the guest (its kernel loads virtio_rng from the initramfs). */
function entropyArgs(): string[] {
  return ['-object', 'rng-random,id=rng0,filename=/dev/urandom', '-device', 'virtio-rng-pci,rng=rng0'];
}

export interface MinimalQemuOptions {
  agentSocket: string;
  /** Guest serial console to this file (default: none). */
  serialLog?: string;
  memoryMiB?: number;
  cpus?: number;
  cmdline?: GuestCmdlineOptions;
}

/** Whole argv (without the binary) for a TCG q35 guest with only the rootfs and the agent port. */
export function minimalQemuArgs(kit: Pick<GuestKit, 'kernel' | 'initrd' | 'rootfs'>, o: MinimalQemuOptions): string[] {
  return [
    '-accel',
    'tcg',
    '-cpu',
    TCG_CPU,
    '-machine',
    'q35',
    '-m',
    `${o.memoryMiB ?? 512}M`,
    '-smp',
    String(o.cpus ?? 1),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-serial',
    o.serialLog ? `file:${o.serialLog}` : 'null',
    ...kitBootArgs(kit, o.cmdline),
    ...kitRootfsArgs(kit),
    ...agentPortArgs(o.agentSocket),
    ...entropyArgs(),
  ];
}
