/**
 * A sandbox's metrics in Prometheus text format (as `kata-runtime metrics` prints them), built with
 * prom-client on a registry of its own per call.
 *
 * Host side: CPU seconds and resident memory of QEMU, virtiofsd and the supervisor (/proc/PID/stat
 * and /proc/PID/status), and each endpoint tap's counters (`ip -s -j link` in the sandbox's
 * namespace). Guest side: memory (/proc/meminfo), load (/proc/loadavg) and interface counters
 * (/proc/net/dev) of the guest, read through the agent's Exec (Kata's agent has a GetMetrics call
 * that reads the same files; this one needs no agent change). A part that cannot be read is left
 * out and counted in kata_metrics_scrape_errors, so one missing process never hides the rest.
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Registry } from 'prom-client';
import { run } from '../../host/exec.js';
import { toolArgv, type NetnsRef } from '../../host/netns.js';
import type { AgentClient } from '../agent/client.js';

export interface MetricsSource {
  id: string;
  /** Process role (qemu, virtiofsd, supervisor) -> pid. */
  pids: Record<string, number>;
  netns: NetnsRef | undefined;
  taps: string[];
  agent: AgentClient | undefined;
}

/** Linux's USER_HZ: /proc/PID/stat counts CPU time in these ticks. */
const CLK_TCK = 100;

interface ProcUsage {
  cpuSeconds: number;
  rssBytes: number;
}

function procUsage(pid: number): ProcUsage {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { cpuSeconds: ticks / CLK_TCK, rssBytes: Number(rss ?? 0) * 1024 };
}

interface LinkStats {
  ifname: string;
  stats64?: Record<'rx' | 'tx', { bytes: number; packets: number; errors: number; dropped: number }>;
}

async function tapStats(ns: NetnsRef | undefined, tap: string): Promise<LinkStats> {
  const [file, args] = toolArgv('ip', ns, ['-s', '-j', 'link', 'show', 'dev', tap]);
  const r = await run(file, args, { timeoutMs: 10_000 });
  const l = (JSON.parse(r.stdout) as LinkStats[])[0];
  if (!l?.stats64) throw new Error(`no statistics for ${tap}`);
  return l;
}

/** /proc/net/dev: per interface, the 8 receive and 8 transmit counters. */
function parseNetDev(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!.trim().split(/\s+/).map(Number));
  }
  return out;
}

const NETDEV_FIELDS: [number, string][] = [
  [0, 'recv_bytes'],
  [1, 'recv_packets'],
  [2, 'recv_errs'],
  [3, 'recv_drop'],
  [8, 'sent_bytes'],
  [9, 'sent_packets'],
  [10, 'sent_errs'],
  [11, 'sent_drop'],
];

const GUEST_SCRIPT = 'cat /proc/meminfo; echo @@; cat /proc/loadavg; echo @@; cat /proc/net/dev';

export async function sandboxMetrics(s: MetricsSource): Promise<string> {
  const registry = new Registry();
  registry.setDefaultLabels({ sandbox_id: s.id });
  const errors = new Counter({
    name: 'kata_metrics_scrape_errors',
    help: 'Parts of the sandbox that could not be read',
    labelNames: ['part'],
    registers: [registry],
  });
  const cpu = new Counter({
    name: 'kata_host_process_cpu_seconds',
    help: 'User and system CPU time of a sandbox process on the host',
    labelNames: ['process'],
    registers: [registry],
  });
  const rss = new Gauge({
    name: 'kata_host_process_resident_memory_bytes',
    help: 'Resident memory of a sandbox process on the host',
    labelNames: ['process'],
    registers: [registry],
  });
  const tap = new Counter({
    name: 'kata_host_tap',
    help: 'Counters of an endpoint tap on the host (rx: sent by the VM, tx: sent to the VM)',
    labelNames: ['interface', 'item'],
    registers: [registry],
  });
  const meminfo = new Gauge({ name: 'kata_guest_meminfo_bytes', help: 'Guest /proc/meminfo', labelNames: ['item'], registers: [registry] });
  const load = new Gauge({ name: 'kata_guest_load', help: 'Guest load average', labelNames: ['period'], registers: [registry] });
  const netdev = new Counter({
    name: 'kata_guest_netdev_stat',
    help: 'Guest /proc/net/dev counters',
    labelNames: ['interface', 'item'],
    registers: [registry],
  });

  for (const [role, pid] of Object.entries(s.pids)) {
    try {
      const u = procUsage(pid);
      cpu.inc({ process: role }, u.cpuSeconds);
      rss.set({ process: role }, u.rssBytes);
    } catch {
      errors.inc({ part: `process ${role}` });
    }
  }
  for (const name of s.taps) {
    try {
      const st = (await tapStats(s.netns, name)).stats64!;
      for (const dir of ['rx', 'tx'] as const)
        for (const item of ['bytes', 'packets', 'errors', 'dropped'] as const)
          tap.inc({ interface: name, item: `${dir}_${item}` }, st[dir][item]);
    } catch {
      errors.inc({ part: `tap ${name}` });
    }
  }
  try {
    if (!s.agent) throw new Error('no agent');
    const r = await s.agent.exec(['sh', '-c', GUEST_SCRIPT], { timeoutMs: 10_000 });
    if (r.exitCode !== 0) throw new Error(r.stderr);
    const [mem = '', avg = '', dev = ''] = r.stdout.split('@@\n');
    for (const m of mem.matchAll(/^(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?$/gm))
      meminfo.set({ item: m[1]! }, Number(m[2]) * (m[0].endsWith('kB') ? 1024 : 1));
    const [l1, l5, l15] = avg.trim().split(/\s+/).map(Number);
    load.set({ period: '1m' }, l1 ?? 0);
    load.set({ period: '5m' }, l5 ?? 0);
    load.set({ period: '15m' }, l15 ?? 0);
    for (const [ifname, v] of parseNetDev(dev)) for (const [i, item] of NETDEV_FIELDS) netdev.inc({ interface: ifname, item }, v[i] ?? 0);
  } catch {
    errors.inc({ part: 'guest' });
  }
  return registry.metrics();
}
