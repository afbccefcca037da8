/**
 * The smallest QEMU command line that boots the guest kit with its agent reachable, for tests that
 * boot the kit without the runtime's QEMU driver.
 */
import type { GuestKit } from '../../runtime-core/guest-kit/index.js';
import { guestKernelParams, type GuestParamsOptions } from '../../runtime-core/guest-kit/cmdline.js';
import { MACHINE_KERNEL_PARAMS } from '../../runtime-core/hypervisor/qemu/cmdline.js';
import { AGENT_PORT_NAME } from '../../guest/agent/protocol.js';

/**
 * CPU model for TCG. "max" exposes RDRAND, so the guest kernel's CRNG is ready at once
 * (random.trust_cpu=on) and node's blocking getrandom() at start-up returns immediately; with the
 * default qemu64 model the agent waits seconds for jitter entropy.
 */
const TCG_CPU = 'max';

/** -kernel/-initrd/-append for the kit. */
function kitBootArgs(kit: Pick<GuestKit, 'kernel' | 'initrd'>, cmdline: Partial<GuestParamsOptions> = {}): string[] {
  const params = [...MACHINE_KERNEL_PARAMS, ...guestKernelParams({ rootDevice: '/dev/vda1', ...cmdline })];
  return ['-kernel', kit.kernel, '-initrd', kit.initrd, '-append', params.join(' ')];
}

/** The rootfs image as a read-only virtio-blk disk (the first disk, /dev/vda; its partition /dev/vda1 is the root). */
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

interface MinimalQemuOptions {
  agentSocket: string;
  /** Guest serial console to this file (default: none). */
  serialLog?: string;
  memoryMiB?: number;
  cpus?: number;
  cmdline?: Partial<GuestParamsOptions>;
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
