/**
 * The kernel parameters of the embedded guest: the guest kit owns them because its init reads them.
 * Without an initramfs (the kit's kernel booting the kit's image) the kernel mounts root=,
 * rootfstype=, rootflags= itself, waits for the device (rootwait) and runs init= (kata-init); with
 * one, its /init reads the same parameters from /proc/cmdline (and kata.init=, default the same
 * kata-init). kata-init and the agent read kata.debug=. The rest are boot-time savers in the spirit
 * of Kata's default kernel_params: no crypto self-tests, trusted TSC, expedited RCU, RDRAND trusted
 * for the CRNG (so node's getrandom() in the guest does not block), kernel interface names (eth0 as
 * the scan reported it). The hypervisor driver adds only what belongs to its machine (console,
 * reboot/panic behaviour, PS/2 probing): hypervisor/qemu/cmdline.ts.
 */
import { ROOTFS_INIT } from './initramfs.js';

export interface GuestParamsOptions {
  /** The rootfs partition of the guest image: /dev/vda1 (first virtio-blk disk) or /dev/pmem0p1 (NVDIMM). */
  rootDevice: string;
  rootFsType?: string;
  /** Extra mount flags for the rootfs (e.g. "dax,errors=remount-ro" on a pmem device); "ro" is always set. */
  rootFlags?: string;
  /**
   * Whether an initramfs mounts the rootfs (default true). False: the kernel does, which needs the
   * image's drivers built in and a device that appears (rootwait waits for it without end).
   */
  initramfs?: boolean;
  /** Kernel debug output (hypervisor enable_debug) instead of quiet. */
  debug?: boolean;
  /** The agent logs every call to the console (kata.debug=1). */
  agentDebug?: boolean;
}

const BOOT_SPEEDUPS = [
  'tsc=reliable',
  'no_timer_check',
  'noreplace-smp',
  'rcupdate.rcu_expedited=1',
  'cryptomgr.notests',
  'random.trust_cpu=on',
  'net.ifnames=0',
];

export function guestKernelParams(o: GuestParamsOptions): string[] {
  const p = o.debug ? ['debug', 'loglevel=7'] : ['quiet'];
  p.push(`root=${o.rootDevice}`, `rootfstype=${o.rootFsType ?? 'ext4'}`, 'ro');
  if (o.rootFlags) p.push(`rootflags=${o.rootFlags}`);
  if (o.initramfs === false) p.push('rootwait', `init=${ROOTFS_INIT}`);
  p.push(...BOOT_SPEEDUPS);
  if (o.agentDebug) p.push('kata.debug=1');
  return p;
}
