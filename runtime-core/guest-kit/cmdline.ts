/**
 * The kernel command line the default guest needs; the hypervisor driver reuses it.
 *
 * The initramfs's /init reads root=, rootfstype=, rootflags= and kata.init= from /proc/cmdline
 * (the kernel itself never mounts the root: there is an initramfs). The rest are boot-time savers
 * in the spirit of Kata's default kernel_params: no PS/2 probing, no crypto self-tests, trusted TSC,
 * expedited RCU; `panic=1` with QEMU's -no-reboot turns a guest panic into a QEMU exit.
 */

export interface GuestCmdlineOptions {
  /** Block device holding the rootfs image (default /dev/vda: the first virtio-blk disk). */
  rootDevice?: string;
  rootFsType?: string;
  /** Extra mount flags for the rootfs (e.g. "dax" on /dev/pmem0); "ro" is always set. */
  rootFlags?: string;
  /** Serial console device; null for none (default ttyS0). */
  console?: string | null;
  /** Kernel messages at warning level and above only (default true). */
  quiet?: boolean;
  /** Agent logs every call to the console (kata.debug=1). */
  agentDebug?: boolean;
  /** Appended as is. */
  extra?: readonly string[];
}

const DEFAULT_ROOT_DEVICE = '/dev/vda';
const GUEST_CONSOLE = 'ttyS0';

const BOOT_SPEEDUPS = [
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
];

function guestKernelParams(opts: GuestCmdlineOptions = {}): string[] {
  const p: string[] = [];
  const console = opts.console === undefined ? GUEST_CONSOLE : opts.console;
  if (console) p.push(`console=${console}`);
  if (opts.quiet ?? true) p.push('quiet');
  p.push(`root=${opts.rootDevice ?? DEFAULT_ROOT_DEVICE}`, `rootfstype=${opts.rootFsType ?? 'ext4'}`, 'ro');
  if (opts.rootFlags) p.push(`rootflags=${opts.rootFlags}`);
  p.push('panic=1', ...BOOT_SPEEDUPS);
  if (opts.agentDebug) p.push('kata.debug=1');
  for (const e of opts.extra ?? []) p.push(e);
  for (const x of p) if (/\s/.test(x) || x === '') throw new Error(`kernel parameter ${JSON.stringify(x)} is empty or contains whitespace`);
  return p;
}

/** The whole `-append` string. */
export function guestKernelCmdline(opts: GuestCmdlineOptions = {}): string {
  return guestKernelParams(opts).join(' ');
}

export const DEFAULT_GUEST_CMDLINE = guestKernelCmdline();
