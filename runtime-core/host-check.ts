import { access, constants } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { run } from '../host/exec.js';
import { createNetns, deleteNetns } from '../host/netns.js';
import { SpawnNetlink } from '../host/netlink.js';

/** One line of `kata-resources check`. */
export interface CheckItem {
  name: string;
  ok: boolean;
  /** "warn" items do not stop a sandbox (there is a fallback); "fail" items do. */
  severity: 'fail' | 'warn';
  detail: string;
  fix?: string;
}

async function exists(p: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(p, mode);
    return true;
  } catch {
    return false;
  }
}

async function version(file: string, args: string[]): Promise<string | undefined> {
  try {
    return (await run(file, args, { timeoutMs: 5000 })).stdout.split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

/**
 * Kernel features, proved by doing them in a throw-away namespace (kr-check-*): the host kernel
 * may have them built in, as modules, or not at all, and /proc/config.gz is not always there.
 */
async function kernelFeatures(): Promise<CheckItem[]> {
  const nl = new SpawnNetlink();
  const ns = await createNetns(`kr-check-${randomBytes(3).toString('hex')}`);
  try {
    const probes: [string, string, string[], 'ip' | 'tc', CheckItem['severity'], string][] = [
      ['kernel: veth', 'veth pairs (CNI ptp/bridge)', ['link add krc0 type veth peer name krc1'], 'ip', 'fail', 'enable CONFIG_VETH'],
      ['kernel: tun/tap', 'tap devices for the VM', ['tuntap add dev krtap0 mode tap vnet_hdr'], 'ip', 'fail', 'modprobe tun (CONFIG_TUN)'],
      ['kernel: macvlan', 'macvlan endpoints', ['link add krmv0 link krc0 type macvlan mode bridge'], 'ip', 'warn', 'modprobe macvlan'],
      [
        'kernel: macvtap',
        'internetworking_model = "macvtap"',
        ['link add krmt0 link krc0 type macvtap mode bridge'],
        'ip',
        'warn',
        'modprobe macvtap',
      ],
      ['kernel: ipvlan', 'ipvlan endpoints', ['link add kriv0 link krc0 type ipvlan mode l2'], 'ip', 'warn', 'modprobe ipvlan'],
      ['kernel: ingress qdisc', 'tc redirect (tcfilter model)', ['qdisc add dev krc0 ingress'], 'tc', 'fail', 'modprobe sch_ingress'],
      [
        'kernel: u32 + mirred',
        'tc redirect (tcfilter model)',
        ['filter add dev krc0 parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev krtap0'],
        'tc',
        'fail',
        'modprobe cls_u32 act_mirred',
      ],
    ];
    const items: CheckItem[] = [];
    for (const [name, use, lines, tool, severity, fix] of probes) {
      const out = await nl.batch(tool, ns, lines);
      const err = out[0];
      items.push(
        err === null || err === undefined
          ? { name, ok: true, severity, detail: `works (${use})` }
          : { name, ok: false, severity, detail: `${use}: ${err.split('\n')[0]}`, fix },
      );
    }
    return items;
  } finally {
    await deleteNetns(ns);
  }
}

export interface HostCheckOptions {
  qemuPath?: string;
  virtiofsdPath?: string;
  /** Probe whether KVM really boots a guest (returns the reason when it does not). */
  kvmProbe?: () => Promise<{ usable: boolean; reason: string }>;
}

export async function hostCheck(opts: HostCheckOptions = {}): Promise<CheckItem[]> {
  const qemu = opts.qemuPath ?? '/usr/bin/qemu-system-x86_64';
  const virtiofsd = opts.virtiofsdPath ?? '/usr/lib/qemu/virtiofsd';
  const items: CheckItem[] = [];
  const isRoot = process.getuid?.() === 0;
  items.push({
    name: 'root',
    ok: isRoot,
    severity: 'fail',
    detail: isRoot ? 'running as root' : 'namespaces, taps and mounts need root',
    fix: 'run as root',
  });

  for (const [bin, pkg] of [
    ['ip', 'iproute2'],
    ['tc', 'iproute2'],
    ['nsenter', 'util-linux'],
    ['setpriv', 'util-linux'],
  ] as const) {
    const v = await version(bin, bin === 'nsenter' || bin === 'setpriv' ? ['--version'] : ['-V']);
    items.push({ name: `tool: ${bin}`, ok: v !== undefined, severity: 'fail', detail: v ?? 'not found', fix: `apt-get install ${pkg}` });
  }

  const qv = await version(qemu, ['--version']);
  const m = qv ? /version (\d+)\.(\d+)/.exec(qv) : null;
  const qok = m !== null && Number(m[1]) >= 6;
  items.push({
    name: 'QEMU',
    ok: qok,
    severity: 'fail',
    detail: qv ? `${qemu}: ${qv}` : `${qemu} not found`,
    fix: qv ? 'QEMU 6.0 or newer is needed (q35 ACPI hotplug)' : 'apt-get install qemu-system-x86',
  });
  const vfs = await exists(virtiofsd, constants.X_OK);
  items.push({
    name: 'virtiofsd',
    ok: vfs,
    severity: 'fail',
    detail: vfs ? virtiofsd : `${virtiofsd} not found`,
    fix: 'apt-get install qemu-system-common (C virtiofsd) or virtiofsd (Rust)',
  });

  const tun = await exists('/dev/net/tun');
  items.push({
    name: '/dev/net/tun',
    ok: tun,
    severity: 'fail',
    detail: tun ? 'present' : 'missing: no taps can be opened',
    fix: 'modprobe tun, or mknod /dev/net/tun c 10 200',
  });
  const vhost = await exists('/dev/vhost-net');
  items.push({
    name: '/dev/vhost-net',
    ok: vhost,
    severity: 'warn',
    detail: vhost ? 'present: virtio-net uses vhost-net' : 'missing: virtio-net runs in QEMU userspace (slower, works)',
    fix: 'modprobe vhost_net',
  });
  const kvmDev = await exists('/dev/kvm');
  if (!kvmDev) {
    items.push({
      name: 'KVM',
      ok: false,
      severity: 'warn',
      detail: '/dev/kvm missing: guests run under TCG (slow)',
      fix: 'enable virtualisation / modprobe kvm_intel or kvm_amd',
    });
  } else if (opts.kvmProbe) {
    const p = await opts.kvmProbe();
    items.push({
      name: 'KVM',
      ok: p.usable,
      severity: 'warn',
      detail: p.usable ? `usable: ${p.reason}` : `/dev/kvm exists but ${p.reason}: guests run under TCG`,
      fix: 'check nested virtualisation of this VM; accel = "tcg" in the config skips the probe',
    });
  } else {
    items.push({ name: 'KVM', ok: true, severity: 'warn', detail: '/dev/kvm present (not probed)' });
  }
  items.push(...(await kernelFeatures()));
  return items;
}

export function formatCheck(items: readonly CheckItem[]): string {
  const lines = items.map((i) => {
    const mark = i.ok ? 'ok  ' : i.severity === 'fail' ? 'FAIL' : 'warn';
    return `${mark}  ${i.name.padEnd(24)} ${i.detail}${!i.ok && i.fix ? `\n      fix: ${i.fix}` : ''}`;
  });
  const failed = items.filter((i) => !i.ok && i.severity === 'fail').length;
  lines.push(failed === 0 ? 'host can run sandboxes' : `${failed} required feature(s) missing`);
  return lines.join('\n');
}
