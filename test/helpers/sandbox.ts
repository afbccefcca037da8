/**
 * Helpers for the runtime-core end-to-end tests: a private runtime (temp config whose state_dir is
 * under /tmp/krt-rt-*, so no test touches /run/kata-resources), the real CLI spawned as a child
 * process, a pod network as a CNI plugin would leave it, and a residue inspection that lists
 * everything of ours still present (empty list = clean).
 *
 * Cleanup never depends on assertions: each runtime registers a teardown that kills, by pid, every
 * process recorded in its state files or whose command line names its unique temp dir, deletes the
 * namespaces its sandboxes created, unmounts what is left below it and removes it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../host/exec.js';
import { isMountPoint, mountsUnder, readMountinfo, unmountAllUnder } from '../../host/mounts.js';
import { deleteNetns, netnsRef, type NetnsRef } from '../../host/netns.js';
import { readProcStat } from '../../host/proc.js';
import { tcJson, tempNetns, vethPair } from './netns.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/** The built CLI (dist/runtime-core/cli/main.js), next to this helper's dist/test/helpers/. */
const CLI = fileURLToPath(new URL('../../runtime-core/cli/main.js', import.meta.url));

export interface Runtime {
  /** The unique temp dir (/tmp/krt-rt-XXXX): config, state, shared tree all below it. */
  dir: string;
  stateDir: string;
  config: string;
}

/**
 * A private runtime: a config file (with `[runtime] state_dir` under a fresh /tmp/krt-rt-* dir, plus
 * `extraToml`), cleaned when the test ends whatever happened.
 */
export function tempRuntime(t: Teardownable, extraToml = ''): Runtime {
  const dir = mkdtempSync(join(tmpdir(), 'krt-rt-'));
  const stateDir = join(dir, 'state');
  const config = join(dir, 'configuration.toml');
  writeFileSync(config, `${extraToml}\n[runtime]\nstate_dir = "${stateDir}"\n`);
  t.teardown(() => cleanupRuntime({ dir, stateDir, config }));
  return { dir, stateDir, config };
}

/** Pids of live processes whose command line mentions `needle` (never this process). */
export function processesMentioning(needle: string): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue;
    }
    if (!cmd.includes(needle)) continue;
    const st = readProcStat(pid);
    if (!st || st.state === 'Z' || st.state === 'X') continue;
    out.push({ pid, cmdline: cmd });
  }
  return out;
}

export function pidAlive(pid: number): boolean {
  const st = readProcStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

interface StateLike {
  netns?: { name?: string; created?: boolean };
  processes?: Record<string, { pid: number; startTime?: number }>;
}

function readStates(stateDir: string): { id: string; state: StateLike }[] {
  const dir = join(stateDir, 'sandboxes');
  const out: { id: string; state: StateLike }[] = [];
  let ids: string[] = [];
  try {
    ids = readdirSync(dir);
  } catch {
    return out;
  }
  for (const id of ids) {
    try {
      out.push({ id, state: JSON.parse(readFileSync(join(dir, id, 'state.json'), 'utf8')) as StateLike });
    } catch {
      out.push({ id, state: {} });
    }
  }
  return out;
}

/** Kill what is ours by pid, delete namespaces our sandboxes created, unmount, remove the dir. */
async function cleanupRuntime(rt: Runtime): Promise<void> {
  const pids = new Set<number>();
  const states = readStates(rt.stateDir);
  for (const { state } of states) {
    for (const p of Object.values(state.processes ?? {})) {
      const st = readProcStat(p.pid);
      if (st && (p.startTime === undefined || p.startTime === 0 || st.startTime === p.startTime)) pids.add(p.pid);
    }
  }
  for (const p of processesMentioning(rt.dir)) pids.add(p.pid);
  for (const pid of pids) killPid(pid);
  for (const pid of pids) await waitFor(() => !pidAlive(pid), 5000).catch(() => {});
  for (const { state } of states) {
    if (state.netns?.created && state.netns.name) await deleteNetns(netnsRef(state.netns.name)).catch(() => {});
  }
  await unmountAllUnder(rt.dir).catch(() => {});
  if (mountsUnder(rt.dir).length === 0) rmSync(rt.dir, { recursive: true, force: true });
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the real CLI (`node dist/runtime-core/cli/main.js ARGS`) and collect its output. `env` is
 * added to this process's environment (KATA_RESOURCES_FAULT is never inherited); on timeout the
 * CLI is killed by its pid and the result says so through `signal`.
 */
export function cli(
  args: readonly string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; nodeEnv?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...(opts.nodeEnv ?? process.env) };
  delete env.KATA_RESOURCES_FAULT;
  delete env.KATA_RESOURCES_CONFIG;
  Object.assign(env, opts.env ?? {});
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => killPid(child.pid!), opts.timeoutMs ?? 180_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A CLI result spelled out for an assertion message. */
export function explain(r: CliResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

/** The fields of `sandbox status --json` that the failure tests read. */
export interface StatusView {
  state: string;
  supervisor?: string;
  pids: Record<string, number>;
  error?: { code: string; message: string };
}

/** The CLI's stdout as one JSON value; throws with the whole result when it is not. */
export function parseJson<T = Record<string, unknown>>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`CLI output is not one JSON value (exit ${r.code}):\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  }
}

/** Poll until fn() is true (or resolves true); rejects after timeoutMs. */
export async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface PodNetwork {
  pod: NetnsRef;
  host: NetnsRef;
  /** The pod side (eth0). */
  ifname: string;
  /** The host-side peer, in `host`. */
  peer: string;
  mac: string;
  mtu: number;
  v4: string;
  gw4: string;
  v6?: string;
  gw6?: string;
  /** A permanent neighbour entry in the pod (sent to the guest as an ARP neighbour). */
  neighbour?: { ip: string; lladdr: string };
}

/**
 * A pod namespace as a CNI plugin would leave it: eth0 (a veth whose peer, with the gateway
 * address, sits in a second test namespace standing for the host), IPv4 (and optionally IPv6, with
 * DAD off so nothing is tentative), the MTU, default routes, optionally a permanent neighbour. Both
 * namespaces are deleted when the test ends.
 */
export async function podNetwork(
  t: Teardownable,
  o: { mtu?: number; v4?: string; gw4?: string; v6?: string; gw6?: string; neighbour?: { ip: string; lladdr: string } } = {},
): Promise<PodNetwork> {
  const host = await tempNetns(t, 'host');
  const pod = await tempNetns(t, 'pod');
  const mtu = o.mtu ?? 1500;
  const v4 = o.v4 ?? '10.77.0.2/24';
  const gw4 = o.gw4 ?? '10.77.0.1';
  const prefix = v4.split('/')[1] ?? '24';
  const { ifname, peer } = await vethPair(pod, host, { podAddr: v4, hostAddr: `${gw4}/${prefix}`, mtu });
  const hostLines: string[] = [];
  const podLines = [`route add default via ${gw4} dev ${ifname}`];
  if (o.v6 && o.gw6) {
    const p6 = o.v6.split('/')[1] ?? '64';
    hostLines.push(`addr add ${o.gw6}/${p6} dev ${peer} nodad`);
    podLines.push(`addr add ${o.v6} dev ${ifname} nodad`, `route add default via ${o.gw6} dev ${ifname}`);
  }
  if (o.neighbour) podLines.push(`neigh add ${o.neighbour.ip} lladdr ${o.neighbour.lladdr} dev ${ifname} nud permanent`);
  if (hostLines.length) await run('ip', ['-n', host.name!, '-batch', '-'], { input: `${hostLines.join('\n')}\n` });
  await run('ip', ['-n', pod.name!, '-batch', '-'], { input: `${podLines.join('\n')}\n` });
  const link = JSON.parse((await run('ip', ['-n', pod.name!, '-j', 'link', 'show', ifname])).stdout) as { address: string }[];
  return {
    pod,
    host,
    ifname,
    peer,
    mac: link[0]!.address,
    mtu,
    v4,
    gw4,
    ...(o.v6 ? { v6: o.v6 } : {}),
    ...(o.gw6 ? { gw6: o.gw6 } : {}),
    ...(o.neighbour ? { neighbour: o.neighbour } : {}),
  };
}

/** Links of a namespace the runtime makes (taps and macvtaps of the tcfilter/macvtap models). */
export async function ourLinks(ns: NetnsRef): Promise<string[]> {
  if (!existsSync(ns.path)) return [];
  const ls = JSON.parse((await run('ip', ['-n', ns.name!, '-j', 'link', 'show'])).stdout) as { ifname: string }[];
  return ls.map((l) => l.ifname).filter((n) => /_kata$/.test(n) || /^tap\d+/.test(n));
}

/** Kinds of the qdiscs on a device that the runtime would add (ingress / clsact). */
export async function ourQdiscs(ns: NetnsRef, dev: string): Promise<string[]> {
  if (!existsSync(ns.path)) return [];
  return (await tcJson(ns, ['qdisc', 'show', 'dev', dev])).map((q) => String(q.kind)).filter((k) => k === 'ingress' || k === 'clsact');
}

/** Socket files below a directory (not descending into mount points: a shared host dir is not ours). */
function socketsUnder(dir: string): string[] {
  const out: string[] = [];
  const table = readMountinfo();
  const walk = (d: string): void => {
    let es: string[];
    try {
      es = readdirSync(d);
    } catch {
      return;
    }
    for (const e of es) {
      const p = join(d, e);
      let st;
      try {
        st = statSync(p, { throwIfNoEntry: false });
      } catch {
        continue;
      }
      if (!st) continue;
      if (st.isSocket()) out.push(p);
      else if (st.isDirectory() && !isMountPoint(p, table)) walk(p);
    }
  };
  walk(dir);
  return out;
}

export interface ResidueOptions {
  /** Sandbox id: its state dir, shared dir and created namespace (kr-<id>) must be gone. */
  id: string;
  /** Pids recorded while it ran (qemu, virtiofsd, supervisor): none may be alive. */
  pids?: number[];
  /** A caller-owned pod namespace and its device: no tap/macvtap of ours, no ingress qdisc left. */
  pod?: { ns: NetnsRef; dev: string };
  /** The sandbox's state record (and its guest console log) are still expected (a failed sandbox before `down`). */
  keepState?: boolean;
}

/**
 * Everything of a sandbox that is still present, as readable lines (empty = nothing left): live
 * processes (recorded pids, or any process naming the runtime's temp dir), mounts below the
 * runtime dir, sockets, the state directory, the shared tree of the sandbox, the namespace the
 * sandbox created, taps and qdiscs in a caller-owned namespace.
 */
export async function residue(rt: Runtime, o: ResidueOptions): Promise<string[]> {
  const left: string[] = [];
  for (const pid of o.pids ?? []) if (pidAlive(pid)) left.push(`process ${pid} alive`);
  for (const p of processesMentioning(rt.dir)) left.push(`process ${p.pid}: ${p.cmdline.slice(0, 160)}`);
  for (const m of mountsUnder(rt.dir)) left.push(`mount ${m.mountPoint}`);
  for (const s of socketsUnder(rt.dir)) left.push(`socket ${s}`);
  const sbDir = join(rt.stateDir, 'sandboxes', o.id);
  if (o.keepState) {
    if (existsSync(sbDir)) {
      // The record and the guest console log (kept for diagnosis until `down`).
      const extra = readdirSync(sbDir).filter((f) => f !== 'state.json' && f !== 'console.log');
      if (extra.length) left.push(`files in the failed sandbox's dir: ${extra.join(' ')}`);
    }
  } else {
    if (existsSync(sbDir)) left.push(`state dir ${sbDir}`);
    const log = join(rt.stateDir, 'logs', `${o.id}.log`);
    if (existsSync(log)) left.push(`log ${log}`);
  }
  const shared = join(rt.stateDir, 'shared', 'sandboxes', o.id);
  if (existsSync(shared)) left.push(`shared dir ${shared}`);
  if (existsSync(join('/run/netns', `kr-${o.id}`))) left.push(`namespace kr-${o.id}`);
  if (o.pod) {
    for (const l of await ourLinks(o.pod.ns)) left.push(`link ${l} in ${o.pod.ns.name}`);
    for (const q of await ourQdiscs(o.pod.ns, o.pod.dev)) left.push(`${q} qdisc on ${o.pod.dev} in ${o.pod.ns.name}`);
  }
  return left;
}

/** The pids of a sandbox view (`sandbox up/status --json`). */
export function viewPids(v: { pids?: Record<string, number> }): number[] {
  return Object.values(v.pids ?? {});
}
