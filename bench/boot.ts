/**
 * Benchmark: how long the embedded guest takes to come up, NVDIMM/DAX image against virtio-blk,
 * against the fastest bare boot of Debian's stock kernel.
 *
 * 1. `sandbox up` through the CLI (node CLI + supervisor + QEMU TCG + virtiofsd + agent ready +
 *    the veth endpoint applied), wall time from spawn to exit, in a pod namespace with a veth as a
 *    CNI plugin leaves it; then MemAvailable in the guest (`exec cat /proc/meminfo`), then `down`.
 *    The default guest (disable_image_nvdimm = false) and disable_image_nvdimm = true alternate,
 *    one unrecorded cold run each first.
 * 2. Reference: the same QEMU under TCG with the same machine, CPU, memory and firmware (qboot when
 *    QEMU has it, as the runtime), -nodefaults, booting
 *    Debian's stock kernel (linux-image-amd64, the uncompressed vmlinux by PVH, whatever kernel the
 *    kit boots: KATA_GUEST_KERNEL=debian makes the kit boot it too) with Kata's
 *    kernel parameters and a busybox initramfs whose /init powers off at once: spawn to exit.
 * 3. Host memory: two sandboxes running side by side per setting, their QEMU processes' PSS
 *    (/proc/<pid>/smaps: total, guest RAM backend, the image mapping).
 *
 * 4. The guest agent's start: spawn to serving on this host (plain, and through start.cjs with its
 *    code cache, against `node -e 0`), and in each guest of step 1 (the ready line it prints on the
 *    guest console: its own uptime when it serves; kata-init's early agent serves `up` before that,
 *    guest/init/early-agent.c). --agent-only runs the host part alone.
 *
 * Median (min-max). Namespaces krt-bb-*, files under /tmp/krt-bench-boot-*, all removed at the end,
 * on failure and on Ctrl-C. Results on stdout, progress on stderr.
 *
 *   node dist/bench/boot.js [--runs 5] [--skip-pss] [--agent-only]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../host/exec.js';
import { rootLogger } from '../host/log.js';
import { createNetns, deleteNetns, type NetnsRef } from '../host/netns.js';
import { sleep } from '../host/retry.js';
import { loadConfig } from '../runtime-core/config/load-config.js';
import { cpioNewc } from '../runtime-core/guest-kit/cpio.js';
import { ensureGuestKit, guestKitDir } from '../runtime-core/guest-kit/index.js';
import { ensureStockVmlinux } from '../runtime-core/guest-kit/stock-kernel.js';
import { firmwareFor } from '../runtime-core/hypervisor/qemu/firmware.js';
import { guestAgentServeMs, hostAgentStart } from './lib/agent-start.js';
import { bundlesInUse, cliRun } from './lib/cli-run.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

const log = rootLogger().child({ bench: 'boot' });

/** Kata's default kernel parameters for QEMU (qemu.go's defaultKernelParams + kernelParams), console on the serial port. */
const KATA_PARAMS = [
  'tsc=reliable',
  'no_timer_check',
  'rcupdate.rcu_expedited=1',
  'i8042.direct=1',
  'i8042.dumbkbd=1',
  'i8042.nopnp=1',
  'i8042.noaux=1',
  'noreplace-smp',
  'reboot=k',
  'cryptomgr.notests',
  'net.ifnames=0',
  'pci=lastbus=0',
  'console=ttyS0',
  'quiet',
  'panic=1',
  'nr_cpus=1',
];
const REF_MARK = 'krt-bench-ref-init';

interface Mode {
  name: string;
  config: string;
  stateDir: string;
}

function out(s = ''): void {
  process.stdout.write(`${s}\n`);
}

function progress(s: string): void {
  process.stderr.write(`.. ${s}\n`);
}

function line(label: string, xs: number[], unit = 'ms', d = 0): string {
  const s = summarize(xs);
  return `${label.padEnd(50)} ${fmt(s.median, d).padStart(8)} ${unit}  (${fmt(s.min, d)}-${fmt(s.max, d)})`;
}

function median(xs: number[]): number {
  return summarize(xs).median;
}

async function must(args: string[]): Promise<{ stdout: string; ms: number }> {
  const r = await cliRun(args);
  if (r.code !== 0) throw new Error(`kata-resources ${args.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r;
}

async function podNetwork(tag: string): Promise<{ pod: NetnsRef; host: NetnsRef }> {
  const host = await createNetns(`krt-bb-${tag}-h`);
  const pod = await createNetns(`krt-bb-${tag}-p`);
  await run('ip', ['-n', host.name!, 'link', 'add', 'veth0', 'mtu', '1400', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name!]);
  await run('ip', ['-n', host.name!, '-batch', '-'], { input: 'link set lo up\nlink set veth0 up\naddr add 10.98.0.1/24 dev veth0\n' });
  await run('ip', ['-n', pod.name!, '-batch', '-'], {
    input: 'link set lo up\naddr add 10.98.0.2/24 dev eth0\nlink set eth0 up\nroute add default via 10.98.0.1 dev eth0\n',
  });
  return { pod, host };
}

/** A /proc/meminfo field in MiB. */
function meminfoMiB(meminfo: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(meminfo);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

interface GuestMem {
  available: number;
  free: number;
  cached: number;
}

/** One `sandbox up` (timed) in the pod namespace, MemAvailable in the guest, `down`. */
async function upDown(
  mode: Mode,
  id: string,
  pod: NetnsRef,
  live: Set<string>,
): Promise<{ upMs: number; mem: GuestMem; agentMs?: number }> {
  const C = ['--config', mode.config];
  live.add(`${mode.config}\0${id}`);
  const up = await must(['sandbox', 'up', '--netns', pod.name!, '--id', id, ...C, '--json']);
  const mem = await must(['exec', id, ...C, '--', 'cat', '/proc/meminfo']);
  // node's agent takes the port over from kata-init's early agent once it is ready, often after `up`
  const consoleLog = join(mode.stateDir, 'sandboxes', id, 'console.log');
  let agentMs: number | undefined;
  for (const until = Date.now() + 15_000; agentMs === undefined && Date.now() < until; await sleep(50))
    agentMs = guestAgentServeMs(existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
  await must(['sandbox', 'down', id, ...C]);
  live.delete(`${mode.config}\0${id}`);
  const f = (k: string): number => meminfoMiB(mem.stdout, k);
  return { upMs: up.ms, mem: { available: f('MemAvailable'), free: f('MemFree'), cached: f('Cached') }, agentMs };
}

/** PSS (KiB) of a process: all of it, the guest RAM backend (/dev/shm), the guest image mapping. */
function pss(pid: number, image: string): { total: number; ram: number; image: number } {
  const r = { total: 0, ram: 0, image: 0 };
  let current = '';
  for (const l of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(l);
    if (head) {
      current = head[1] ?? '';
      continue;
    }
    const m = /^Pss:\s+(\d+) kB/.exec(l);
    if (!m) continue;
    const kb = Number(m[1]);
    r.total += kb;
    if (current === image) r.image += kb;
    else if (current.startsWith('/dev/shm/')) r.ram += kb;
  }
  return r;
}

/** Two sandboxes of one setting running together: their QEMUs' PSS, summed. */
async function twoRunning(
  mode: Mode,
  tag: string,
  image: string,
  live: Set<string>,
): Promise<{ total: number; ram: number; image: number }> {
  const C = ['--config', mode.config];
  const ids = [`krt-bb-${tag}-${mode.name}-a`, `krt-bb-${tag}-${mode.name}-b`];
  for (const id of ids) live.add(`${mode.config}\0${id}`);
  try {
    const ups = await Promise.all(ids.map((id) => must(['sandbox', 'up', '--id', id, ...C, '--json'])));
    const pids = ups.map((u) => (JSON.parse(u.stdout) as { pids: { qemu: number } }).pids.qemu);
    // The same work in both guests after boot, then a moment for it to settle.
    await Promise.all(ids.map((id) => must(['exec', id, ...C, '--', 'cat', '/proc/meminfo'])));
    await new Promise((r) => setTimeout(r, 2000));
    const sum = { total: 0, ram: 0, image: 0 };
    for (const p of pids) {
      const x = pss(p, image);
      sum.total += x.total;
      sum.ram += x.ram;
      sum.image += x.image;
    }
    return sum;
  } finally {
    for (const id of ids) {
      await cliRun(['sandbox', 'down', id, ...C]);
      live.delete(`${mode.config}\0${id}`);
    }
  }
}

/** The reference boot: spawn to exit of QEMU booting the stock kernel into an init that powers off. */
function referenceBoot(qemu: string, kernel: string, initrd: string, consoleLog: string): Promise<number> {
  // The firmware the runtime boots its guest with (qboot when QEMU has it): faster for this boot too
  // (to poweroff 2.96-4.44 s against 4.83-5.89 s with SeaBIOS, 3 alternating boots at load 5.9).
  const bios = firmwareFor('', qemu);
  const args = [
    ...['-machine', 'q35,accel=tcg', '-cpu', 'max', '-smp', '1', '-m', '512M'],
    ...['-nodefaults', '-no-user-config', '-nographic', '-no-reboot'],
    ...(bios ? ['-bios', bios] : []),
    ...['-serial', `file:${consoleLog}`],
    ...['-kernel', kernel, '-initrd', initrd, '-append', KATA_PARAMS.join(' ')],
  ];
  return new Promise((resolve, reject) => {
    const t0 = now();
    const c = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    const timer = setTimeout(() => c.kill('SIGKILL'), 300_000);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(timer);
      const ms = msSince(t0);
      const console = existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '';
      if (code !== 0) reject(new Error(`reference QEMU exited ${code}: ${err.slice(-1000)}`));
      else if (!console.includes(REF_MARK) || /Kernel panic/.test(console))
        reject(new Error(`reference boot did not reach its /init or panicked: ${console.slice(-1500)}`));
      else resolve(ms);
    });
  });
}

/** Host: the agent's spawn to serving, plain and with its code cache, against node -e 0. */
async function printHostAgentStart(runs: number): Promise<void> {
  progress(`the agent's start on this host, ${runs} rounds`);
  const h = await hostAgentStart(runs);
  const r0 = median(h.nodeE0);
  out(`== the guest agent on this host: spawn to serving (/dev/null as its port), median (min-max) of ${runs}`);
  out(line('node -e 0 (spawn to exit; the reference)', h.nodeE0, 'ms', 1));
  out(line('node agent.cjs (plain compile)', h.plain, 'ms', 1));
  out(line(`node start.cjs (code cache, ${(h.cacheBytes / 1024).toFixed(0)} KiB)`, h.withCache, 'ms', 1));
  out(`ratio plain / node -e 0                      ${(median(h.plain) / r0).toFixed(2)}x`);
  out(`ratio code cache / node -e 0                 ${(median(h.withCache) / r0).toFixed(2)}x`);
  out();
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const ri = argv.indexOf('--runs');
  const runs = ri >= 0 ? Number(argv[ri + 1]) : 5;
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs takes a positive integer');
  const tag = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'krt-bench-boot-'));
  const modes: Mode[] = [
    { name: 'nvdimm', config: join(dir, 'nvdimm.toml'), stateDir: join(dir, 'state-nvdimm') },
    { name: 'blk', config: join(dir, 'blk.toml'), stateDir: join(dir, 'state-blk') },
  ];
  writeFileSync(modes[0]!.config, `[runtime]\nstate_dir = "${modes[0]!.stateDir}"\n`);
  writeFileSync(modes[1]!.config, `[hypervisor.qemu]\ndisable_image_nvdimm = true\n\n[runtime]\nstate_dir = "${modes[1]!.stateDir}"\n`);
  const live = new Set<string>();
  let net: { pod: NetnsRef; host: NetnsRef } | undefined;
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    for (const k of live) {
      const [config, id] = k.split('\0') as [string, string];
      await cliRun(['sandbox', 'down', id, '--config', config]).catch(() => undefined);
    }
    if (net) {
      await deleteNetns(net.pod).catch(() => {});
      await deleteNetns(net.host).catch(() => {});
    }
    rmSync(dir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      void cleanup().finally(() => process.exit(130));
    });
  }

  try {
    await printHostAgentStart(runs * 2);
    if (argv.includes('--agent-only')) return;
    const kit = await ensureGuestKit({ onProgress: progress });
    const qemu = loadConfig(modes[0]!.config, { log }).hypervisor.path;
    const stock = await ensureStockVmlinux(guestKitDir(), progress);
    const busybox = (await run('sh', ['-c', 'command -v busybox'])).stdout.trim();
    const init = `#!/bin/busybox sh\n/bin/busybox echo ${REF_MARK} > /dev/console\n/bin/busybox poweroff -f\n`;
    const refInitrd = join(dir, 'ref-initrd.cpio');
    writeFileSync(
      refInitrd,
      cpioNewc([
        { type: 'dir', path: 'bin' },
        { type: 'dir', path: 'dev' },
        { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
        { type: 'file', path: 'bin/busybox', data: readFileSync(busybox), mode: 0o755 },
        { type: 'file', path: 'init', data: Buffer.from(init), mode: 0o755 },
      ]),
    );
    net = await podNetwork(tag);
    out(
      `boot bench: ${runs} runs per setting after 1 cold run each; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(
          ' ',
        )}; node ${process.version}; guest kit ${kit.hash} (${kit.kernelSource} kernel: ${kit.kernelPackage} ${kit.kernelPackageVersion}, ${kit.kernelVersion})`,
    );
    out(
      `sandbox up: through the CLI (${bundlesInUse()}), spawn to exit, pod namespace ${net.pod.name} with a veth (1 endpoint), virtio-fs, agent ready`,
    );
    out(
      `reference: ${qemu} -machine q35,accel=tcg -cpu max -smp 1 -m 512M -nodefaults -bios ${firmwareFor('', qemu) ?? '(QEMU default)'}, ${stock.pkg.name} ${stock.pkg.version} ${stock.vmlinux} by PVH,`,
    );
    out(`  busybox initramfs (${(readFileSync(refInitrd).length / 1024).toFixed(0)} KiB) whose /init powers off; spawn to exit`);
    out();

    const up: Record<string, number[]> = { nvdimm: [], blk: [] };
    const mem: Record<string, GuestMem[]> = { nvdimm: [], blk: [] };
    const agent: Record<string, number[]> = { nvdimm: [], blk: [] };
    const ref: number[] = [];
    for (const m of modes) {
      progress(`cold run ${m.name}`);
      await upDown(m, `krt-bb-${tag}-${m.name}-cold`, net.pod, live);
    }
    await referenceBoot(qemu, stock.vmlinux, refInitrd, join(dir, 'ref-cold.log'));
    for (let i = 0; i < runs; i++) {
      for (const m of modes) {
        const r = await upDown(m, `krt-bb-${tag}-${m.name}-${i}`, net.pod, live);
        up[m.name]!.push(r.upMs);
        mem[m.name]!.push(r.mem);
        if (r.agentMs !== undefined) agent[m.name]!.push(r.agentMs);
        progress(`run ${i + 1}/${runs} ${m.name}: up ${fmt(r.upMs, 0)} ms, MemAvailable ${fmt(r.mem.available, 0)} MiB`);
      }
      const log = join(dir, `ref-${i}.log`);
      ref.push(await referenceBoot(qemu, stock.vmlinux, refInitrd, log));
      rmSync(log, { force: true });
      progress(`run ${i + 1}/${runs} reference: ${fmt(ref[i]!, 0)} ms`);
    }

    out(`== wall time, median (min-max) of ${runs}`);
    out(line('sandbox up, default (NVDIMM, /dev/pmem0p1 dax)', up.nvdimm!));
    out(line('sandbox up, disable_image_nvdimm = true (vda1)', up.blk!));
    out(line('reference: stock kernel bare boot to poweroff', ref));
    const r0 = median(ref);
    out(`ratio default / reference                    ${(median(up.nvdimm!) / r0).toFixed(2)}x   (goal <= 1.0)`);
    out(`ratio disable_image_nvdimm / reference       ${(median(up.blk!) / r0).toFixed(2)}x`);
    out(`ratio default / disable_image_nvdimm         ${(median(up.nvdimm!) / median(up.blk!)).toFixed(2)}x`);
    out();
    out(
      "== node's agent in the guest: spawn to serving (its ready line on the guest console); it takes the port over from kata-init's early agent, which served `up`",
    );
    for (const m of modes)
      if (agent[m.name]!.length)
        out(line(`agent start, ${m.name === 'nvdimm' ? 'default (NVDIMM)' : 'disable_image_nvdimm = true'}`, agent[m.name]!));
    out();
    out(`== guest memory after boot (512 MiB guest, /proc/meminfo), median (min-max) of ${runs}`);
    for (const [label, k] of [
      ['MemAvailable', 'available'],
      ['MemFree', 'free'],
      ['Cached (page cache)', 'cached'],
    ] as const) {
      out(
        line(
          `${label}, default (NVDIMM, dax)`,
          mem.nvdimm!.map((x) => x[k]),
          'MiB',
        ),
      );
      out(
        line(
          `${label}, disable_image_nvdimm = true`,
          mem.blk!.map((x) => x[k]),
          'MiB',
        ),
      );
    }
    out();

    if (!argv.includes('--skip-pss')) {
      out('== host PSS of two running sandboxes\u2019 QEMU processes, summed (one sample)');
      for (const m of modes) {
        progress(`two sandboxes side by side: ${m.name}`);
        const p = await twoRunning(m, tag, kit.rootfs, live);
        out(
          `${(m.name === 'nvdimm' ? 'default (NVDIMM)' : 'disable_image_nvdimm = true').padEnd(50)} ${fmt(p.total / 1024, 0).padStart(8)} MiB` +
            `  (guest RAM ${fmt(p.ram / 1024, 0)} MiB, image mapping ${fmt(p.image / 1024, 0)} MiB)`,
        );
      }
    }
  } finally {
    await cleanup();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench boot failed: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
