/**
 * Benchmark: attach and detach veth endpoints (tcfilter model) in 1, 10 and 50 namespaces,
 * sequentially and 4 at a time, through the endpoint API with
 *   - spawn:          SpawnNetlink (a fresh process such as a CNI plugin: one process per batch),
 *   - coprocess-cold: CoprocessNetlink whose `ip`/`tc` helpers start inside the timed attach and
 *                     again inside the timed detach (a runtime core that meets the namespace first),
 *   - coprocess-warm: CoprocessNetlink whose helpers already run (started in the untimed prep),
 * and beside them the same setup done one `ip`/`tc` command per process (perf-baselines §2a:
 * 7 spawns to attach, 2 to detach) as the baseline, with the ratios.
 *
 * Prints per-endpoint latency (median, p95), process spawns per endpoint (host/exec spawnCount),
 * endpoints per second and errors. Namespace preparation, checks and removal are outside the
 * timed regions. Every namespace is named kr-bench-<run>-..., and all of them are removed on
 * success, failure and Ctrl-C. Results go to stdout, logs to stderr.
 *
 *   node dist/bench/network-attach.js [--counts 1,10,50] [--conc 1,4] [--samples 20]
 *        [--modes split,spawn,coprocess-cold,coprocess-warm] [--cleanup]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, spawnCount } from '../host/exec.js';
import { rootLogger } from '../host/log.js';
import { CoprocessNetlink, SpawnNetlink, type Netlink } from '../host/netlink.js';
import { NETNS_RUN_DIR, netnsRef, type NetnsRef } from '../host/netns.js';
import type { Attached, PluginContext } from '../host/plugin.js';
import { Sysfs } from '../host/sysfs.js';
import { attachEndpoint, checkEndpoint, detachEndpoint, type EndpointResources } from '../plugins/network/endpoint.js';
import { readLink } from '../plugins/network/link-info.js';
import type { ScannedLink } from '../plugins/network/types.js';
import { fmt, msSince, now, pool, summarize } from './lib/stats.js';

type Mode = 'split' | 'spawn' | 'coprocess-cold' | 'coprocess-warm';
const ALL_MODES: readonly Mode[] = ['split', 'spawn', 'coprocess-cold', 'coprocess-warm'];
const PREFIX = 'kr-bench-';
const HOST_GROUP = 77;

const log = rootLogger().child({ bench: 'network-attach' });

// ---------------------------------------------------------------------------------------------
// Arguments

interface Options {
  counts: number[];
  conc: number[];
  modes: Mode[];
  /** At least this many endpoints per configuration (small counts are repeated in rounds). */
  samples: number;
  cleanupOnly: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { counts: [1, 10, 50], conc: [1, 4], modes: [...ALL_MODES], samples: 20, cleanupOnly: false };
  const ints = (v: string | undefined, flag: string): number[] => {
    const xs = (v ?? '').split(',').map(Number);
    if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1))
      throw new Error(`${flag} wants positive integers separated by commas, got ${v}`);
    return xs;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--counts') {
      o.counts = ints(v, a);
      i++;
    } else if (a === '--conc') {
      o.conc = ints(v, a);
      i++;
    } else if (a === '--samples') {
      o.samples = ints(v, a)[0]!;
      i++;
    } else if (a === '--modes') {
      const ms = (v ?? '').split(',') as Mode[];
      for (const m of ms) if (!ALL_MODES.includes(m)) throw new Error(`--modes: unknown mode ${m} (${ALL_MODES.join(', ')})`);
      o.modes = ms;
      i++;
    } else if (a === '--cleanup') o.cleanupOnly = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: network-attach [--counts 1,10,50] [--conc 1,4] [--samples 20] [--modes split,spawn,coprocess-cold,coprocess-warm] [--cleanup]\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Namespaces: every one is tracked so that any exit path removes it.

const runId = randomBytes(3).toString('hex');
const created = new Set<string>();
let seq = 0;
let aborting = false;

async function addNetns(tag: string): Promise<NetnsRef> {
  if (aborting) throw new Error('aborting');
  const name = `${PREFIX}${runId}-${tag}${seq++}`;
  created.add(name);
  await run('ip', ['netns', 'add', name]);
  return netnsRef(name);
}

async function delNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'del', name], { reject: false });
  created.delete(name);
}

/** Remove namespaces of this run (or, with all=true, of any run: --cleanup after a kill -9). */
async function sweep(all: boolean): Promise<number> {
  let names: string[] = [];
  try {
    names = readdirSync(NETNS_RUN_DIR).filter((n) => n.startsWith(all ? PREFIX : `${PREFIX}${runId}-`));
  } catch {
    // no /run/netns: nothing to do
  }
  for (const n of new Set([...names, ...(all ? [] : created)])) await delNetns(n);
  return names.length;
}

// ---------------------------------------------------------------------------------------------
// One round: N pod namespaces, each with eth0 (a veth whose peer is in a shared fake host netns).

interface Pod {
  ns: NetnsRef;
  link?: ScannedLink;
  attached?: Attached<EndpointResources>;
}

interface Round {
  host: NetnsRef;
  pods: Pod[];
}

const prepNetlink = new SpawnNetlink();

async function prepRound(n: number, conc: number): Promise<Round> {
  const host = await addNetns('h');
  const pods: Pod[] = [];
  for (const r of await pool(Array.from({ length: n }), 4, () => addNetns('p'))) {
    if (r.status === 'rejected') throw r.reason;
    pods.push({ ns: r.value });
  }
  // One batch in the host netns makes every veth pair (host ends in one group, deleted at once later).
  const lines = pods.flatMap((p, i) => [
    `link add hv${i} group ${HOST_GROUP} type veth peer name eth0 netns ${p.ns.name}`,
    `link set hv${i} up`,
  ]);
  await run('ip', ['-n', host.name!, '-batch', '-'], { input: `${lines.join('\n')}\n` });
  const ready = await pool(pods, Math.max(4, conc), async (p) => {
    await run('ip', ['-n', p.ns.name!, '-batch', '-'], { input: 'link set lo up\nlink set eth0 up\naddr add 10.77.0.2/24 dev eth0\n' });
    p.link = await readLink({ netlink: prepNetlink, netns: p.ns }, 'eth0');
  });
  const failed = ready.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return { host, pods };
}

async function unprepRound(r: Round): Promise<void> {
  await run('ip', ['-n', r.host.name!, 'link', 'del', 'group', String(HOST_GROUP)], { reject: false });
  await pool(r.pods, 4, (p) => delNetns(p.ns.name!));
  await delNetns(r.host.name!);
}

// ---------------------------------------------------------------------------------------------
// What is timed

/** perf-baselines §2a, one process per command. */
const SPLIT_ATTACH: readonly (readonly string[])[] = [
  ['ip', 'tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap'],
  ['ip', 'link', 'set', 'dev', 'tap0_kata', 'mtu', '1500', 'up'],
  ['ip', 'addr', 'flush', 'dev', 'eth0'],
  ['tc', 'qdisc', 'add', 'dev', 'eth0', 'ingress'],
  [
    'tc',
    'filter',
    'add',
    'dev',
    'eth0',
    'parent',
    'ffff:',
    'protocol',
    'all',
    'u32',
    'match',
    'u8',
    '0',
    '0',
    'action',
    'mirred',
    'egress',
    'redirect',
    'dev',
    'tap0_kata',
  ],
  ['tc', 'qdisc', 'add', 'dev', 'tap0_kata', 'ingress'],
  [
    'tc',
    'filter',
    'add',
    'dev',
    'tap0_kata',
    'parent',
    'ffff:',
    'protocol',
    'all',
    'u32',
    'match',
    'u8',
    '0',
    '0',
    'action',
    'mirred',
    'egress',
    'redirect',
    'dev',
    'eth0',
  ],
];
const SPLIT_DETACH: readonly (readonly string[])[] = [
  ['tc', 'qdisc', 'del', 'dev', 'eth0', 'ingress'],
  ['ip', 'link', 'del', 'tap0_kata'],
];

async function splitRun(ns: NetnsRef, cmds: readonly (readonly string[])[]): Promise<void> {
  for (const [tool, ...args] of cmds) await run(tool!, ['-n', ns.name!, ...args]);
}

class Harness {
  private nl: Netlink | undefined;
  private readonly runDir: string;
  constructor(
    readonly mode: Mode,
    runDir: string,
  ) {
    this.runDir = runDir;
    if (mode === 'spawn') this.nl = new SpawnNetlink();
    // Long idle time: the helpers must not stop between attach and detach by themselves; the
    // bench releases them explicitly (cold mode: before each timed phase; always: before unprep).
    else if (mode !== 'split') this.nl = new CoprocessNetlink(600_000);
  }

  ctx(p: Pod, i: number): PluginContext {
    return { sandboxId: `bench-${i}`, netns: p.ns, log, netlink: this.nl!, sysfs: new Sysfs(), runDir: this.runDir };
  }

  /** Untimed, before a phase: start (warm) or stop (cold) the helpers. */
  async beforePhase(pods: readonly Pod[]): Promise<void> {
    if (this.mode === 'coprocess-cold') await Promise.all(pods.map((p) => this.nl!.release(p.ns)));
    if (this.mode === 'coprocess-warm') {
      await pool(pods, 4, async (p) => {
        await this.nl!.json('ip', p.ns, ['link', 'show', 'dev', 'lo']);
        await this.nl!.json('tc', p.ns, ['qdisc', 'show', 'dev', 'lo']);
      });
    }
  }

  async attach(p: Pod, i: number): Promise<void> {
    if (this.mode === 'split') return splitRun(p.ns, SPLIT_ATTACH);
    p.attached = await attachEndpoint(this.ctx(p, i), { link: p.link!, index: 0, model: 'tcfilter', queues: 1, vhost: false });
  }

  async detach(p: Pod, i: number): Promise<void> {
    if (this.mode === 'split') return splitRun(p.ns, SPLIT_DETACH);
    if (p.attached) await detachEndpoint(this.ctx(p, i), p.attached);
  }

  async release(pods: readonly Pod[]): Promise<void> {
    if (this.nl) await Promise.all(pods.map((p) => this.nl!.release(p.ns)));
  }

  async close(): Promise<void> {
    await this.nl?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Checks (untimed): the attach really built the redirect, the detach really removed it.

interface FilterJson {
  options?: { actions?: { kind?: string; to_dev?: string }[] };
}

async function redirects(ns: NetnsRef, dev: string, to: string): Promise<boolean> {
  const r = await run('tc', ['-n', ns.name!, '-json', 'filter', 'show', 'dev', dev, 'parent', 'ffff:'], { reject: false });
  if (r.exitCode !== 0 || r.stdout.trim() === '') return false;
  return (JSON.parse(r.stdout) as FilterJson[]).some((f) => (f.options?.actions ?? []).some((a) => a.kind === 'mirred' && a.to_dev === to));
}

async function checkAttached(mode: Mode, p: Pod): Promise<string[]> {
  if (mode !== 'split')
    return checkEndpoint(
      { sandboxId: 'check', netns: p.ns, log, netlink: prepNetlink, sysfs: new Sysfs(), runDir: '/nonexistent' },
      p.attached!,
    );
  const problems: string[] = [];
  if (!(await redirects(p.ns, 'eth0', 'tap0_kata'))) problems.push('no redirect eth0 -> tap0_kata');
  if (!(await redirects(p.ns, 'tap0_kata', 'eth0'))) problems.push('no redirect tap0_kata -> eth0');
  return problems;
}

async function checkDetached(p: Pod): Promise<string[]> {
  const links = JSON.parse((await run('ip', ['-n', p.ns.name!, '-json', 'link', 'show'])).stdout) as { ifname: string }[];
  const qdiscs = JSON.parse((await run('tc', ['-n', p.ns.name!, '-json', 'qdisc', 'show', 'dev', 'eth0'])).stdout || '[]') as {
    kind: string;
  }[];
  const problems: string[] = [];
  const left = links.filter((l) => l.ifname.endsWith('_kata')).map((l) => l.ifname);
  if (left.length > 0) problems.push(`left after detach: ${left.join(',')}`);
  if (qdiscs.some((q) => q.kind === 'ingress')) problems.push('ingress qdisc left on eth0');
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Measurement

interface PhaseFigures {
  latencies: number[];
  wallMs: number;
  spawns: number;
  endpoints: number;
  errors: string[];
}

function emptyPhase(): PhaseFigures {
  return { latencies: [], wallMs: 0, spawns: 0, endpoints: 0, errors: [] };
}

async function timedPhase(pods: readonly Pod[], conc: number, fig: PhaseFigures, op: (p: Pod, i: number) => Promise<void>): Promise<void> {
  const s0 = spawnCount();
  const w0 = now();
  const results = await pool(pods, conc, async (p, i) => {
    const t0 = now();
    await op(p, i);
    fig.latencies.push(msSince(t0));
  });
  fig.wallMs += msSince(w0);
  fig.spawns += spawnCount() - s0;
  fig.endpoints += pods.length;
  for (const r of results) if (r.status === 'rejected') fig.errors.push(String((r.reason as Error)?.message ?? r.reason));
}

interface ConfigResult {
  mode: Mode;
  n: number;
  conc: number;
  rounds: number;
  attach: PhaseFigures;
  detach: PhaseFigures;
  problems: string[];
}

async function measure(mode: Mode, n: number, conc: number, rounds: number, runDir: string): Promise<ConfigResult> {
  const h = new Harness(mode, runDir);
  const res: ConfigResult = { mode, n, conc, rounds, attach: emptyPhase(), detach: emptyPhase(), problems: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      const round = await prepRound(n, conc);
      try {
        await h.beforePhase(round.pods);
        await timedPhase(round.pods, conc, res.attach, (p, i) => h.attach(p, i));
        for (const c of await pool(round.pods, 4, (p) => (p.attached || mode === 'split' ? checkAttached(mode, p) : Promise.resolve([])))) {
          if (c.status === 'fulfilled') res.problems.push(...c.value);
          else res.problems.push(String(c.reason));
        }
        await h.beforePhase(round.pods);
        await timedPhase(round.pods, conc, res.detach, (p, i) => h.detach(p, i));
        for (const c of await pool(round.pods, 4, (p) => checkDetached(p))) {
          if (c.status === 'fulfilled') res.problems.push(...c.value);
          else res.problems.push(String(c.reason));
        }
      } finally {
        await h.release(round.pods);
        await unprepRound(round);
      }
      // Let the kernel finish destroying the namespaces (it holds RTNL meanwhile: perf-baselines §8).
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await h.close();
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// Output

function pad(s: string, w: number, left = false): string {
  return left ? s.padEnd(w) : s.padStart(w);
}

const COLS: [string, number][] = [
  ['mode', 15],
  ['N', 3],
  ['fly', 4],
  ['n', 4],
  ['att med', 8],
  ['att p95', 8],
  ['spawn/ep', 9],
  ['ep/s', 7],
  ['det med', 8],
  ['det p95', 8],
  ['spawn/ep', 9],
  ['ep/s', 7],
  ['errors', 7],
];

function row(cells: string[]): string {
  return cells.map((c, i) => pad(c, COLS[i]![1], i === 0)).join(' ');
}

function line(r: ConfigResult): string {
  const a = summarize(r.attach.latencies);
  const d = summarize(r.detach.latencies);
  const eps = (f: PhaseFigures) => fmt(f.endpoints / (f.wallMs / 1000), 0);
  const per = (f: PhaseFigures) => fmt(f.spawns / Math.max(1, f.endpoints), 2);
  return row([
    r.mode,
    String(r.n),
    String(r.conc),
    String(r.attach.endpoints),
    fmt(a.median, 2),
    fmt(a.p95, 2),
    per(r.attach),
    eps(r.attach),
    fmt(d.median, 2),
    fmt(d.p95, 2),
    per(r.detach),
    eps(r.detach),
    String(r.attach.errors.length + r.detach.errors.length + r.problems.length),
  ]);
}

function out(s = ''): void {
  process.stdout.write(`${s}\n`);
}

function report(results: ConfigResult[], opts: Options): void {
  out();
  out('Per-endpoint latency in ms (median, p95 over all endpoints of all rounds); spawn/ep = processes');
  out('started by the host layer per endpoint in the timed phase; ep/s = endpoints / wall time of the phase.');
  out(`fly = endpoints in flight; n = endpoints measured (rounds of N namespaces until >= ${opts.samples}).`);
  out();
  out(row(COLS.map(([h]) => h)));
  for (const r of results) out(line(r));

  const find = (m: Mode, n: number, c: number) => results.find((r) => r.mode === m && r.n === n && r.conc === c);
  if (opts.modes.includes('split')) {
    out();
    out('Baseline ratios: split (one ip/tc process per command) against each mode; > 1x means the mode is faster.');
    const w = [15, 3, 4, 14, 14, 14, 14];
    const r2 = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' ');
    out(r2(['mode', 'N', 'fly', 'attach lat', 'attach ep/s', 'detach lat', 'detach ep/s']));
    const ratio = (x: number, y: number) => (Number.isFinite(x / y) ? `${fmt(x / y, 1)}x` : '-');
    const eps = (f: PhaseFigures) => f.endpoints / (f.wallMs / 1000);
    const med = (f: PhaseFigures) => summarize(f.latencies).median;
    for (const r of results) {
      if (r.mode === 'split') continue;
      const b = find('split', r.n, r.conc);
      if (!b) continue;
      out(
        r2([
          r.mode,
          String(r.n),
          String(r.conc),
          ratio(med(b.attach), med(r.attach)),
          ratio(eps(r.attach), eps(b.attach)),
          ratio(med(b.detach), med(r.detach)),
          ratio(eps(r.detach), eps(b.detach)),
        ]),
      );
    }
  }

  out();
  out('Goals:');
  const spawnRuns = results.filter((r) => r.mode === 'spawn');
  if (spawnRuns.length > 0) {
    const worst = Math.max(...spawnRuns.map((r) => r.attach.spawns / Math.max(1, r.attach.endpoints)));
    out(`  fresh process (spawn): at most 2 spawns per attach            -> ${fmt(worst, 2)} ${worst <= 2 ? 'MET' : 'NOT MET'}`);
  }
  const warm = results.filter((r) => r.mode === 'coprocess-warm' && r.conc === 1);
  if (warm.length > 0) {
    const m = Math.max(...warm.map((r) => summarize(r.attach.latencies).median));
    out(`  long-lived process (coprocess-warm, sequential): <= 3 ms per attach (median) -> ${fmt(m, 2)} ms ${m <= 3 ? 'MET' : 'NOT MET'}`);
  }
  const cold = results.filter((r) => r.mode === 'coprocess-cold' && r.conc === 1);
  if (cold.length > 0) {
    const m = Math.max(...cold.map((r) => summarize(r.attach.latencies).median));
    out(`  (for reference, coprocess-cold, sequential: ${fmt(m, 2)} ms per attach, helper start included)`);
  }
  const fifty = results.filter((r) => r.n >= 50 && r.conc >= 4 && r.mode !== 'split');
  if (fifty.length > 0) {
    const errs = fifty.reduce((s, r) => s + r.attach.errors.length + r.detach.errors.length + r.problems.length, 0);
    out(`  50 endpoints at 4 in flight without error                  -> ${errs} errors ${errs === 0 ? 'MET' : 'NOT MET'}`);
  }
  const all = results.flatMap((r) =>
    [...r.attach.errors, ...r.detach.errors, ...r.problems].map((e) => `${r.mode} N=${r.n} fly=${r.conc}: ${e}`),
  );
  if (all.length > 0) {
    out();
    out(`Errors (${all.length}, first 10):`);
    for (const e of all.slice(0, 10)) out(`  ${e}`);
  }
}

// ---------------------------------------------------------------------------------------------

let runDir: string | undefined;
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    aborting = true;
    await prepNetlink.close();
    // Twice: a namespace whose `ip netns add` was in flight at the first sweep shows up in the second.
    await sweep(false);
    await new Promise((r) => setTimeout(r, 200));
    await sweep(false);
    if (runDir) rmSync(runDir, { recursive: true, force: true });
  })();
  return cleaning;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.cleanupOnly) {
    const n = await sweep(true);
    out(`removed ${n} ${PREFIX}* namespaces`);
    return 0;
  }
  runDir = mkdtempSync(join(tmpdir(), PREFIX));
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  out(
    `network-attach: veth endpoints, tcfilter model; counts ${opts.counts.join(',')}, in flight ${opts.conc.join(',')}, modes ${opts.modes.join(',')}; load average ${load}`,
  );
  const results: ConfigResult[] = [];
  // Warm-up (not recorded): loads the code paths and the kernel modules once per mode.
  for (const mode of opts.modes) await measure(mode, 1, 1, 1, runDir);
  for (const n of opts.counts) {
    for (const conc of opts.conc) {
      // One namespace cannot have several attaches in flight: that would repeat the sequential run.
      if (conc > n && opts.conc.some((c) => c < conc && c >= 1)) continue;
      for (const mode of opts.modes) {
        const rounds = Math.max(1, Math.ceil(opts.samples / n));
        const r = await measure(mode, n, conc, rounds, runDir);
        results.push(r);
        process.stderr.write(`${line(r)}\n`);
      }
    }
  }
  report(results, opts);
  const failed = results.some((r) => r.attach.errors.length + r.detach.errors.length + r.problems.length > 0);
  return failed ? 1 : 0;
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: removing the benchmark's namespaces...\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (e: unknown) => {
    // After a signal, the namespaces vanish under the running round: that failure is expected.
    if (!aborting) process.stderr.write(`network-attach failed: ${(e as Error)?.stack ?? String(e)}\n`);
    await cleanup();
    process.exit(1);
  });
