/**
 * The guest's initramfs: busybox, the kernel modules the guest needs (in load order; none with the
 * kit's own kernel, which has them built in), and an /init that loads them, mounts the rootfs image
 * read-only and switch_roots into it. Everything else (node, the agent) lives on the rootfs.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cpioNewc, type CpioEntry } from './cpio.js';

/** Applets /init uses (symlinks to busybox in /bin). */
const INIT_APPLETS = [
  'sh',
  'mount',
  'umount',
  'insmod',
  'modprobe',
  'switch_root',
  'mkdir',
  'sleep',
  'cat',
  'echo',
  'poweroff',
  'ls',
  'dmesg',
];

/** Where the rootfs's own init lives (a busybox sh script, see rootfs.ts). */
export const ROOTFS_INIT = '/sbin/kata-init';

export const INIT_SCRIPT = `#!/bin/sh
# kata-resources guest initramfs: load modules, mount the rootfs read-only, switch_root into it.
export PATH=/bin
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
fail() {
  echo "kata-init: $*; powering off" >/dev/console
  sleep 1
  poweroff -f
}
# One modprobe process for all modules (an exec costs ~20 ms under TCG); insmod each if it fails.
# None with the kit's own kernel (everything built in): no process at all.
if [ -s /lib/modules/load-order ] && ! modprobe -a $(cat /lib/modules/load-order) 2>/dev/null; then
  while read -r m; do
    insmod "/lib/modules/$m" 2>/dev/null || echo "kata-init: insmod $m failed" >/dev/console
  done < /lib/modules/load-order
fi
root=/dev/vda1 fstype=ext4 flags=ro init=${ROOTFS_INIT}
for a in $(cat /proc/cmdline); do
  case "$a" in
    root=*) root="\${a#root=}" ;;
    rootfstype=*) fstype="\${a#rootfstype=}" ;;
    rootflags=*) flags="ro,\${a#rootflags=}" ;;
    kata.init=*) init="\${a#kata.init=}" ;;
  esac
done
read up _ < /proc/uptime
end=$((\${up%.*} + 30))
while [ ! -b "$root" ]; do
  read up _ < /proc/uptime
  [ "\${up%.*}" -ge "$end" ] && fail "root device $root did not appear within 30 s"
  sleep 0.01
done
mkdir -p /newroot
mount -t "$fstype" -o "$flags" "$root" /newroot || fail "cannot mount $root ($fstype, $flags)"
for d in dev proc sys; do mount --move "/$d" "/newroot/$d" || fail "cannot move /$d"; done
exec switch_root /newroot "$init"
`;

export interface InitramfsInputs {
  /** Path of a static busybox. */
  busybox: string;
  /** Root of the unpacked kernel package (has lib/modules/<release>). */
  kernelRoot: string;
  release: string;
  /** Module paths relative to lib/modules/<release>, in load order. */
  modules: readonly string[];
}

export async function buildInitramfs(inp: InitramfsInputs): Promise<Buffer> {
  const entries: CpioEntry[] = [];
  for (const d of ['bin', 'dev', 'proc', 'sys', 'newroot', 'lib', 'lib/modules']) entries.push({ type: 'dir', path: d });
  entries.push({ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  entries.push({ type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });
  entries.push({ type: 'file', path: 'bin/busybox', data: await readFile(inp.busybox), mode: 0o755 });
  for (const a of INIT_APPLETS) entries.push({ type: 'symlink', path: `bin/${a}`, target: 'busybox' });
  const modDir = join(inp.kernelRoot, 'lib', 'modules', inp.release);
  const names: string[] = [];
  for (const rel of inp.modules) {
    const base = rel.split('/').pop()!;
    if (names.includes(base)) continue;
    names.push(base);
    entries.push({ type: 'file', path: `lib/modules/${base}`, data: await readFile(join(modDir, rel)), mode: 0o644 });
  }
  entries.push({ type: 'file', path: 'lib/modules/load-order', data: Buffer.from(names.length ? `${names.join('\n')}\n` : '') });
  // busybox modprobe reads /lib/modules/<release>/modules.dep: every module, no dependencies (the
  // load order already has them first), by absolute path.
  entries.push({ type: 'dir', path: `lib/modules/${inp.release}` });
  entries.push({
    type: 'file',
    path: `lib/modules/${inp.release}/modules.dep`,
    data: Buffer.from(names.map((n) => `/lib/modules/${n}:\n`).join('')),
  });
  entries.push({ type: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 });
  return cpioNewc(entries);
}
