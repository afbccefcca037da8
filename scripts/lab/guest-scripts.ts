/**
 * What runs inside the lab VM: the initramfs /init (stage 1: the host's root over virtio-fs,
 * read-only, as the lower layer of an overlay on a tmpfs; the module tree; the pseudo file systems),
 * stage 2 (pid 1 in that root: loopback, the virtio-serial ports, the job, its exit status), and the
 * job script the host writes for each run (modules, cwd, environment, the command).
 */

/** Busybox applets stage 1 uses (symlinks in the initramfs's /bin). */
export const INIT_APPLETS = ['sh', 'mount', 'insmod', 'switch_root', 'mkdir', 'cat', 'cp', 'echo', 'poweroff', 'uname', 'sleep'];

/** virtio-serial port names (QEMU `virtserialport,name=`), found by name in the guest's sysfs. */
export const PORTS = { stdout: 'kr-lab.stdout', stderr: 'kr-lab.stderr', ctl: 'kr-lab.ctl' } as const;
/** virtio-fs tag of the host's root. */
export const ROOT_TAG = 'hostroot';

export const LAB_INIT = `#!/bin/sh
# kata-resources kernel lab, stage 1: the host's root (virtio-fs, read-only) under a tmpfs overlay.
export PATH=/bin
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
fail() {
  echo "kr-lab: $*; powering off" >/dev/console
  poweroff -f
  sleep 60
}
while read -r m; do
  insmod "/lib/modules/$m" || fail "insmod $m failed"
done < /lib/modules/load-order
modules=
for a in $(cat /proc/cmdline); do
  case "$a" in lab.modules=*) modules="\${a#lab.modules=}" ;; esac
done
[ -n "$modules" ] || fail "no lab.modules= on the kernel command line"
mkdir -p /lower /rw /newroot
mount -t virtiofs -o ro ${ROOT_TAG} /lower || fail "cannot mount the host root (virtio-fs tag ${ROOT_TAG})"
mount -t tmpfs -o mode=0755 kr-lab-rw /rw || fail "cannot mount the tmpfs for the overlay"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work kr-lab-root /newroot || fail "cannot mount the overlay"
release=$(uname -r)
mkdir -p "/newroot/lib/modules/$release"
mount --bind "/newroot$modules/$release" "/newroot/lib/modules/$release" || fail "no module tree at $modules/$release"
for d in dev proc sys; do mount --move "/$d" "/newroot/$d" || fail "cannot move /$d"; done
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts || fail "cannot mount /dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /newroot/dev/shm || fail "cannot mount /dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=0755 run /newroot/run || fail "cannot mount /run"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /newroot/sys/fs/cgroup || fail "cannot mount cgroup2"
mkdir -p /newroot/run/kr-lab
cp /bin/busybox /stage2 /newroot/run/kr-lab/ || fail "cannot copy stage 2"
exec switch_root /newroot /run/kr-lab/busybox sh /run/kr-lab/stage2
`;

export const LAB_STAGE2 = `# kata-resources kernel lab, stage 2 (pid 1 in the overlay root): loopback, ports, the job.
B=/run/kr-lab/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stop() {
  $B sync
  $B poweroff -f
}
job=
for a in $($B cat /proc/cmdline); do
  case "$a" in lab.job=*) job="\${a#lab.job=}" ;; esac
done
port() {
  for p in /sys/class/virtio-ports/*; do
    [ "$($B cat "$p/name" 2>/dev/null)" = "$1" ] && { echo "/dev/\${p##*/}"; return 0; }
  done
  return 1
}
if ! out=$(port ${PORTS.stdout}) || ! err=$(port ${PORTS.stderr}) || ! ctl=$(port ${PORTS.ctl}); then
  echo "kr-lab: the virtio-serial ports are missing" >/dev/console
  stop
fi
exec 3>"$out" 4>"$err" 5<>"$ctl"
# No udev: make the device nodes whose open loads a module (/dev/net/tun, /dev/loop-control,
# /dev/mapper/control, ...), as kmod static-nodes would, from modules.devname.
while read -r _ name dev; do
  case "$dev" in
    [cb][0-9]*:[0-9]*)
      n=\${dev#?}
      [ -e "/dev/$name" ] || { $B mkdir -p "$($B dirname "/dev/$name")" && $B mknod -m 0600 "/dev/$name" "\${dev%%[0-9]*}" "\${n%%:*}" "\${n##*:}"; }
      ;;
  esac
done < "/lib/modules/$($B uname -r)/modules.devname"
$B hostname kr-lab
$B ip link set lo up
# The end-of-output marker comes from the host on the control port (the command cannot see it).
read -r _ mark <&5
echo ready >&5
/bin/sh "$job/job.sh" 1>&3 2>&4 </dev/null
rc=$?
printf '%s' "$mark" >&3
printf '%s' "$mark" >&4
echo "exit $rc" >&5
# The host stops the VM as soon as it has read everything; this is the fallback.
$B sleep 30
stop
`;

/** A word for sh: single-quoted, embedded quotes as '\\''. */
function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface JobSpec {
  modules: readonly string[];
  cwd: string;
  env: Readonly<Record<string, string>>;
  argv: readonly string[];
}

/**
 * The job, as a POSIX sh script run by stage 2 with stdout/stderr on the ports and the control port
 * on fd 5: load the modules (a failure is reported as `error ...` on fd 5), enter the cwd, close the
 * port fds and exec the command with exactly the given environment.
 */
export function jobScript(j: JobSpec): string {
  const lines = ['# kata-resources kernel lab job (generated)'];
  for (const m of j.modules) {
    lines.push(
      `e=$(modprobe ${shQuote(m)} 2>&1) || { printf 'error modprobe %s failed: %s\\n' ${shQuote(m)} "$(echo "$e" | tr '\\n' ' ')" >&5; exit 125; }`,
    );
  }
  lines.push(`cd ${shQuote(j.cwd)} || { echo ${shQuote(`error cannot enter ${j.cwd} in the VM`)} >&5; exit 125; }`);
  lines.push('exec 3>&- 4>&- 5>&-');
  const env = Object.entries(j.env).map(([k, v]) => shQuote(`${k}=${v}`));
  lines.push(`exec /usr/bin/env -i ${[...env, ...j.argv.map(shQuote)].join(' ')}`);
  return `${lines.join('\n')}\n`;
}
