/**
 * The kernel parameters of the embedded guest: the guest kit owns them because its initramfs reads
 * them. /init takes root=, rootfstype=, rootflags= and kata.init= from /proc/cmdline (the kernel
 * never mounts the root itself: there is an initramfs); the agent reads kata.debug=. The rest are
 * boot-time savers in the spirit of Kata's default kernel_params: no crypto self-tests, trusted TSC,
 * expedited RCU, RDRAND trusted for the CRNG (so node's getrandom() in the guest does not block),
 * kernel interface names (eth0 as the scan reported it). The hypervisor driver adds only what belongs
 * to its machine (console, reboot/panic behaviour, PS/2 probing): hypervisor/qemu/cmdline.ts.
 */

export interface GuestParamsOptions {
  /** The rootfs partition of the guest image: /dev/vda1 (first virtio-blk disk) or /dev/pmem0p1 (NVDIMM). */
  rootDevice: string;
  rootFsType?: string;
  /** Extra mount flags for the rootfs (e.g. "dax,errors=remount-ro" on a pmem device); "ro" is always set. */
  rootFlags?: string;
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
  p.push(...BOOT_SPEEDUPS);
  if (o.agentDebug) p.push('kata.debug=1');
  return p;
}
