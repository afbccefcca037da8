/**
 * Benchmark: VERSION, ADD, CHECK and DEL latency of kata-cni chained after ptp, beside two
 * references measured in the same run and in the same way:
 *   - a bare `node -e 0` start (the floor of any Node plugin),
 *   - Debian's Go `tuning` plugin in the same chained position (same prevResult, same namespace),
 * plus a "floor probe": a node process that only starts the two helpers a kata-cni call needs
 * (`ip -n NS -batch -` and `tc -n NS -batch -`) and gets one answer from each (what a Node plugin
 * that drives iproute2 pays besides Node's start; it uses node:child_process, kata-cni does not). Every figure is taken both with and without NODE_EXTRA_CA_CERTS (this
 * machine sets it; Node then reads the CA bundle at start, about 40-60 ms, which real hosts do not pay).
 *
 * The plugins are spawned directly, as a runtime does: the benchmark re-executes itself inside a
 * host namespace of its own (nsenter --net), so ptp's host side lands there. Each sample gets a
 * fresh pod namespace and a fresh ptp ADD (untimed); the environments alternate per sample and every
 * command of a sample runs once per environment, so load from other work on the machine spreads
 * evenly. Only the plugin process (spawn to exit) is timed. kata-cni runs with KATA_CNI_TIMING=1
 * (a few process.uptime() calls and one stderr line at exit, < 0.1 ms): its phase marks give the
 * breakdown printed after the figures. Namespaces are named kr-bench-cni-<run id>-* and removed at the end,
 * on failure and on Ctrl-C.
 *
 * With --compare FILE (a kata-cni.js built from another commit, e.g. main's), that file is
 * installed too and its ADD, CHECK and DEL run in every sample beside the current build's, on the
 * same ptp attachment, the two in alternating order; its rows and ratios are labelled "base".
 *
 *   node dist/bench/cni.js [--runs 40] [--compare FILE]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../host/exec.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
/** This run's namespaces: a concurrent run of the bench has another id, and its namespaces are not ours to remove. */
const PREFIX = `kr-bench-cni-${randomBytes(2).toString('hex')}-`;
const CA = process.env.NODE_EXTRA_CA_CERTS;

interface Options {
  runs: number;
  compare?: string;
  inner?: { host: string; bin: string; work: string };
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { runs: 40 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') {
      o.runs = Number(argv[++i]);
      if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs wants a positive integer');
    } else if (a === '--compare') {
      o.compare = resolve(argv[++i] ?? '');
    } else if (a === '--inner') {
      o.inner = { host: argv[++i]!, bin: argv[++i]!, work: argv[++i]! };
    } else {
      throw new Error(`unknown argument ${a} (usage: node dist/bench/cni.js [--runs N] [--compare FILE])`);
    }
  }
  return o;
}

interface Outcome {
  ms: number;
  code: number | null;
  stdout: string;
  /**
   * kata-cni's phase marks (KATA_CNI_TIMING), ms on Node's clock (0 once node's main runs, after
   * exec and dynamic linking); with its exit-event marks also '@spawn' (when it was spawned: < 0)
   * and '@end' (when this process saw it end), on that same clock.
   */
  marks?: Record<string, number>;
}

function timed(file: string, args: string[], env: Record<string, string>, stdin: string): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    const t0 = now();
    const hr0 = process.hrtime.bigint();
    const c = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    c.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    c.on('error', reject);
    c.stdin.on('error', () => {});
    c.stdin.end(stdin);
    c.on('close', (code) => {
      const hrEnd = process.hrtime.bigint();
      const out: Outcome = { ms: msSince(t0), code, stdout };
      const m = /^kata-cni-timing (.*)$/m.exec(stderr);
      if (m?.[1]) {
        const marks = JSON.parse(m[1]) as Record<string, number>;
        const at = marks['exit-event'];
        const atHr = marks['exit-event-hr'];
        if (at !== undefined && atHr !== undefined) {
          const clock0 = atHr - at; // Node's clock 0, in CLOCK_MONOTONIC ms
          marks['@spawn'] = Number(hr0 / 1000n) / 1000 - clock0;
          marks['@end'] = Number(hrEnd / 1000n) / 1000 - clock0;
        }
        out.marks = marks;
      }
      resolvePromise(out);
    });
  });
}

/**
 * The floor probe: start the two helpers of a kata-cni call in NS (with node:child_process), get one
 * answer from each (each has then started and entered the namespace: a failing sentinel line) and
 * exit, not waiting for them. What any Node plugin driving iproute2 this way pays besides Node's start.
 */
const FLOOR_PROBE = [
  "const { spawn } = require('node:child_process');",
  'const ns = process.argv[1];',
  'let pending = 2;',
  "for (const [tool, line] of [['ip', 'addr show dev a/b'], ['tc', 'qdisc show dev a/b']]) {",
  "  const c = spawn(tool, ['-n', ns, '-force', '-json', '-batch', '-']);",
  '  c.stdout.resume();',
  "  c.stderr.on('data', (d) => { if (/Command failed/.test(String(d)) && --pending === 0) process.exit(0); });",
  "  c.stdin.write(line + '\\n');",
  '}',
].join('\n');

/** `node -e 0` that reports its own CPU time at exit, as kata-cni's KATA_CNI_TIMING line does. */
const NODE_CPU_PROBE =
  "process.on('exit', () => { const c = process.cpuUsage(); process.stderr.write('kata-cni-timing ' + JSON.stringify({ 'cpu-ms': (c.user + c.system) / 1000, " +
  "'exit-event': process.uptime() * 1000, 'exit-event-hr': Number(process.hrtime.bigint() / 1000n) / 1000 }) + '\\n'); })";

/** The first phases of every kata-cni call that starts helpers (ADD, DEL). */
const PLUGIN_START: [string, string | undefined, string][] = [
  ["spawn to Node's clock start (fork, exec; with shell lines: helpers started, exec of node)", '@spawn', '@zero'],
  ['Node start (to the first line of kata-cni)', '@zero', 'launcher'],
  ['read the payload (two reads), compile the head (code cache)', 'launcher', 'head-compiled-from-cache'],
  ['take over the helpers the shell started, or spawn them (one spawn)', 'head-compiled-from-cache', 'helpers-spawned'],
  ['compile the plugin code (code cache)', 'helpers-spawned', 'code-loaded'],
];

/** Phases of a kata-cni call from its marks, in order: [label, from mark, to mark]. */
const PHASES: Record<string, [string, string | undefined, string][]> = {
  'node -e 0': [
    ["spawn to Node's clock start (fork, exec, linking node)", '@spawn', '@zero'],
    ['Node start to the exit event', '@zero', 'exit-event'],
    ['exit event to the runtime seeing the exit', 'exit-event', '@end'],
  ],
  VERSION: [
    ["spawn to Node's clock start (fork, exec, linking node)", '@spawn', '@zero'],
    ['Node start to the result written', '@zero', 'result-written'],
    ['process.exit to the exit event', 'result-written', 'exit-event'],
    ['exit event to the runtime seeing the exit', 'exit-event', '@end'],
  ],
  ADD: [
    ...PLUGIN_START,
    ['read stdin', 'code-loaded', 'stdin-read'],
    ['start link read and tc helper, validate config', 'stdin-read', 'config-checked'],
    ['link read answered (ip helper)', 'config-checked', 'link-read'],
    ['tap + redirect (helpers: kernel work)', 'link-read', 'attached'],
    ['record, tap MAC, result', 'attached', 'result-written'],
    ['process.exit to the exit event', 'result-written', 'exit-event'],
    ['exit event to the runtime seeing the exit', 'exit-event', '@end'],
  ],
  DEL: [
    ...PLUGIN_START,
    ['read stdin, start tc helper, validate config', 'code-loaded', 'config-checked'],
    ['read the record, plan the detach', 'config-checked', 'detach-planned'],
    ['qdisc del + tap unlisted (helpers: kernel work)', 'detach-planned', 'detached'],
    ['remove the record, write the result', 'detached', 'result-written'],
    ['process.exit to the exit event', 'result-written', 'exit-event'],
    ['exit event to the runtime seeing the exit', 'exit-event', '@end'],
  ],
};

// ---------------------------------------------------------------------------------------------
// Inner: runs inside the bench host namespace.

async function inner(o: Options): Promise<void> {
  const { host, bin, work } = o.inner!;
  const envs: [string, Record<string, string>][] = [['without CA certs', {}]];
  if (CA) envs.push(['with NODE_EXTRA_CA_CERTS', { NODE_EXTRA_CA_CERTS: CA }]);
  const samples = new Map<string, number[]>();
  const add = (k: string, ms: number): void => {
    const xs = samples.get(k) ?? [];
    xs.push(ms);
    samples.set(k, xs);
  };
  const phases = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const addCpu = (k: string, r: Outcome): void => {
    const v = r.marks?.['cpu-ms'];
    if (v === undefined || r.code !== 0) return;
    const xs = cpu.get(k) ?? [];
    xs.push(v);
    cpu.set(k, xs);
  };
  const addPhases = (cmd: string, label: string, r: Outcome, variant = 'kata-cni'): void => {
    if (!r.marks || r.code !== 0) return;
    for (const [name, from, to] of PHASES[cmd] ?? []) {
      const at = (m: string | undefined): number | undefined => (m === undefined || m === '@zero' ? 0 : r.marks![m]);
      const a = at(from);
      const b = at(to);
      if (a === undefined || b === undefined) continue;
      const k = `${variant === 'kata-cni' ? '' : `${variant} `}${cmd}|${label}|${name}`;
      const xs = phases.get(k) ?? [];
      xs.push(b - a);
      phases.set(k, xs);
    }
  };
  const ipam = join(work, 'ipam');
  const ptp = {
    type: 'ptp',
    ipMasq: false,
    ipam: { type: 'host-local', dataDir: ipam, ranges: [[{ subnet: '10.95.0.0/16' }]], routes: [{ dst: '0.0.0.0/0' }] },
  };
  const kata = { type: 'kata-cni', stateDir: join(work, 'state') };
  const tuning = { type: 'tuning', dataDir: join(work, 'tuning'), sysctl: {} };
  const conf = (p: Record<string, unknown>, prev?: unknown): string =>
    JSON.stringify({ ...p, cniVersion: '1.0.0', name: 'kr-bench-cni', ...(prev ? { prevResult: prev } : {}) });
  const base = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: `/usr/lib/cni:${bin}` };
  const failures: string[] = [];
  const must = (what: string, r: Outcome): Outcome => {
    if (r.code !== 0) failures.push(`${what}: exit ${r.code} ${r.stdout.trim()}`);
    return r;
  };
  const KATA = join(bin, 'kata-cni');
  /** [name, file]: the current build, and with --compare the other one. */
  const variants: [string, string][] = [['kata-cni', KATA]];
  if (o.compare) variants.push(['base kata-cni', join(bin, 'base', 'kata-cni')]);

  for (let i = 0; i < o.runs; i++) {
    // Alternate which environment goes first, so neither always follows the other.
    for (const [label, extra] of i % 2 === 0 ? envs : [...envs].reverse()) {
      const env = { ...base, ...extra };
      const kenv = { ...env, KATA_CNI_TIMING: '1' };
      add(`node -e 0|${label}`, must('node -e 0', await timed(process.execPath, ['-e', '0'], env, '')).ms);
      const probe = must('node cpu probe', await timed(process.execPath, ['-e', NODE_CPU_PROBE], env, ''));
      addCpu(`node -e 0|${label}`, probe);
      addPhases('node -e 0', label, probe);
      const kv = must('kata-cni VERSION', await timed(KATA, [], { ...kenv, CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}'));
      add(`kata-cni VERSION|${label}`, kv.ms);
      addPhases('VERSION', label, kv);
      addCpu(`kata-cni VERSION|${label}`, kv);

      const pod = `${PREFIX}p-${randomBytes(3).toString('hex')}`;
      await run('ip', ['netns', 'add', pod]);
      try {
        add(`floor probe|${label}`, must('floor probe', await timed(process.execPath, ['-e', FLOOR_PROBE, pod], env, '')).ms);
        const cni = (cmd: string, e: Record<string, string> = env): Record<string, string> => ({
          ...e,
          CNI_COMMAND: cmd,
          CNI_CONTAINERID: `bench${i}`,
          CNI_NETNS: `/run/netns/${pod}`,
          CNI_IFNAME: 'eth0',
        });
        const p = must('ptp ADD', await timed('/usr/lib/cni/ptp', [], cni('ADD'), conf(ptp)));
        const prev = JSON.parse(p.stdout) as Record<string, unknown>;
        // With --compare: both builds on the same attachment, the order alternating per sample.
        for (const [v, file] of i % 2 === 0 ? variants : [...variants].reverse()) {
          const ka = must(`${v} ADD`, await timed(file, [], cni('ADD', kenv), conf(kata, prev)));
          add(`${v} ADD|${label}`, ka.ms);
          addPhases('ADD', label, ka, v);
          addCpu(`${v} ADD|${label}`, ka);
          const cached = ka.code === 0 ? JSON.parse(ka.stdout) : prev;
          const kc = must(`${v} CHECK`, await timed(file, [], cni('CHECK', kenv), conf(kata, cached)));
          add(`${v} CHECK|${label}`, kc.ms);
          addCpu(`${v} CHECK|${label}`, kc);
          const kd = must(`${v} DEL`, await timed(file, [], cni('DEL', kenv), conf(kata, cached)));
          add(`${v} DEL|${label}`, kd.ms);
          addPhases('DEL', label, kd, v);
          addCpu(`${v} DEL|${label}`, kd);
        }
        const tuned = must('tuning ADD', await timed('/usr/lib/cni/tuning', [], cni('ADD'), conf(tuning, prev)));
        add(`tuning ADD|${label}`, tuned.ms);
        const tprev = tuned.code === 0 ? JSON.parse(tuned.stdout) : prev;
        add(`tuning CHECK|${label}`, must('tuning CHECK', await timed('/usr/lib/cni/tuning', [], cni('CHECK'), conf(tuning, tprev))).ms);
        add(`tuning DEL|${label}`, must('tuning DEL', await timed('/usr/lib/cni/tuning', [], cni('DEL'), conf(tuning, tprev))).ms);
        must('ptp DEL', await timed('/usr/lib/cni/ptp', [], cni('DEL'), conf(ptp, prev)));
      } finally {
        await run('ip', ['netns', 'del', pod], { reject: false });
      }
    }
    if ((i + 1) % 10 === 0) process.stderr.write(`bench:cni ${i + 1}/${o.runs} samples (host ${host})\n`);
  }

  const med = (k: string): number => summarize(samples.get(k) ?? []).median;
  const cols = envs.map(([l]) => l);
  const lines: string[] = [];
  lines.push(
    `kata-cni latency, ${o.runs} samples per figure, load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (${cpus().length} CPUs), Node ${process.version}`,
  );
  lines.push('');
  lines.push('| what | env | median ms | p95 ms | min ms |');
  lines.push('|---|---|---:|---:|---:|');
  const whats = [
    'node -e 0',
    'floor probe',
    'kata-cni VERSION',
    'kata-cni ADD',
    'kata-cni CHECK',
    'kata-cni DEL',
    ...(o.compare ? ['base kata-cni ADD', 'base kata-cni CHECK', 'base kata-cni DEL'] : []),
    'tuning ADD',
    'tuning CHECK',
    'tuning DEL',
  ];
  for (const what of whats) {
    for (const l of cols) {
      const s = summarize(samples.get(`${what}|${l}`) ?? []);
      lines.push(`| ${what} | ${l} | ${fmt(s.median)} | ${fmt(s.p95)} | ${fmt(s.min)} |`);
    }
  }
  lines.push('');
  lines.push(`| ratio (medians) | ${cols.join(' | ')} |`);
  lines.push(`|---|${cols.map(() => '---:').join('|')}|`);
  const ratio = (a: string, b: string): string => cols.map((l) => fmt(med(`${a}|${l}`) / med(`${b}|${l}`), 2)).join(' | ');
  lines.push(`| kata-cni ADD / node -e 0 (goal <= 1.5) | ${ratio('kata-cni ADD', 'node -e 0')} |`);
  lines.push(`| kata-cni DEL / node -e 0 (goal <= 1.5) | ${ratio('kata-cni DEL', 'node -e 0')} |`);
  lines.push(`| kata-cni CHECK / node -e 0 | ${ratio('kata-cni CHECK', 'node -e 0')} |`);
  if (o.compare) {
    for (const c of ['ADD', 'DEL', 'CHECK']) lines.push(`| base kata-cni ${c} / node -e 0 | ${ratio(`base kata-cni ${c}`, 'node -e 0')} |`);
    for (const c of ['ADD', 'DEL', 'CHECK'])
      lines.push(`| kata-cni ${c} / base kata-cni ${c} | ${ratio(`kata-cni ${c}`, `base kata-cni ${c}`)} |`);
  }
  lines.push(`| kata-cni VERSION / node -e 0 | ${ratio('kata-cni VERSION', 'node -e 0')} |`);
  lines.push(`| floor probe / node -e 0 | ${ratio('floor probe', 'node -e 0')} |`);
  lines.push(`| kata-cni ADD / tuning ADD | ${ratio('kata-cni ADD', 'tuning ADD')} |`);
  lines.push(`| kata-cni CHECK / tuning CHECK | ${ratio('kata-cni CHECK', 'tuning CHECK')} |`);
  lines.push(`| kata-cni DEL / tuning DEL | ${ratio('kata-cni DEL', 'tuning DEL')} |`);
  for (const c of ['ADD', 'DEL', 'CHECK']) {
    lines.push(
      `| kata-cni ${c} - node -e 0 (ms beyond Node's start) | ${cols.map((l) => fmt(med(`kata-cni ${c}|${l}`) - med(`node -e 0|${l}`))).join(' | ')} |`,
    );
  }
  lines.push('');
  lines.push(`| CPU time of the process itself (median ms; less moved by other work than wall time) | ${cols.join(' | ')} |`);
  lines.push(`|---|${cols.map(() => '---:').join('|')}|`);
  const cpuMed = (k: string): number => summarize(cpu.get(k) ?? []).median;
  const cpuWhats = ['node -e 0', 'kata-cni VERSION', 'kata-cni ADD', 'kata-cni CHECK', 'kata-cni DEL'];
  if (o.compare) cpuWhats.push('base kata-cni ADD', 'base kata-cni CHECK', 'base kata-cni DEL');
  for (const what of cpuWhats) {
    lines.push(`| ${what} | ${cols.map((l) => fmt(cpuMed(`${what}|${l}`))).join(' | ')} |`);
  }
  for (const what of o.compare
    ? ['kata-cni ADD', 'kata-cni DEL', 'base kata-cni ADD', 'base kata-cni DEL']
    : ['kata-cni ADD', 'kata-cni DEL']) {
    lines.push(
      `| ${what} CPU / node -e 0 CPU | ${cols.map((l) => fmt(cpuMed(`${what}|${l}`) / cpuMed(`node -e 0|${l}`), 2)).join(' | ')} |`,
    );
  }
  for (const [v] of variants) {
    const pre = v === 'kata-cni' ? '' : `${v} `;
    for (const cmd of v === 'kata-cni' ? Object.keys(PHASES) : ['ADD', 'DEL']) {
      lines.push('');
      const whose = cmd === 'node -e 0' ? 'a `node -e 0` (with an exit handler)' : `a ${v} ${cmd}`;
      lines.push(`| where ${whose} goes (median ms of each phase) | ${cols.join(' | ')} |`);
      lines.push(`|---|${cols.map(() => '---:').join('|')}|`);
      for (const [name] of PHASES[cmd]!) {
        lines.push(`| ${name} | ${cols.map((l) => fmt(summarize(phases.get(`${pre}${cmd}|${l}|${name}`) ?? []).median)).join(' | ')} |`);
      }
    }
  }
  const l0 = cols[0]!;
  const node0 = med(`node -e 0|${l0}`);
  const floor = med(`floor probe|${l0}`);
  const phase = (cmd: string, name: string): number => summarize(phases.get(`${cmd}|${l0}|${name}`) ?? []).median;
  const kAdd = phase('ADD', 'tap + redirect (helpers: kernel work)');
  const kDel = phase('DEL', 'qdisc del + tap unlisted (helpers: kernel work)');
  lines.push('');
  lines.push(
    `Floor (${l0}): node -e 0 ${fmt(node0)} ms; a Node process that only starts its ip and tc helpers ${fmt(floor)} ms ` +
      `(${fmt(floor / node0, 2)}x); the kernel work seen from the plugin adds ${fmt(kAdd)} ms to an ADD ` +
      `(tuntap add, two ingress qdiscs on up devices: each an RCU grace period) and ${fmt(kDel)} ms to a DEL ` +
      `(the qdisc del, the tap leaving the namespace). So a Node plugin that starts iproute2 helpers with ` +
      `node:child_process pays ADD ${fmt((floor + kAdd) / node0, 2)}x and DEL ${fmt((floor + kDel) / node0, 2)}x ` +
      `of node -e 0 before any code of its own; kata-cni's raw spawn saves that module, and compiling its code adds back.`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  if (failures.length > 0) {
    process.stdout.write(`\nerrors (${failures.length}):\n${[...new Set(failures)].slice(0, 10).join('\n')}\n`);
    process.exitCode = 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Outer: namespaces, install, re-exec inside the host namespace, cleanup.

async function outer(o: Options): Promise<void> {
  const host = `${PREFIX}h-${randomBytes(3).toString('hex')}`;
  const work = mkdtempSync(join(tmpdir(), 'kr-bench-cni-'));
  const bin = join(work, 'bin');
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    const list = (await run('ip', ['netns', 'list'], { reject: false })).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
    for (const ns of list.filter((n) => n.startsWith(PREFIX))) await run('ip', ['netns', 'del', ns], { reject: false });
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    void cleanup().then(() => process.exit(130));
  });
  try {
    await run(process.execPath, [join(REPO, 'cni/build/install.mjs'), '--bin-dir', bin]);
    if (o.compare) installCompare(o.compare, join(bin, 'base'));
    await run('ip', ['netns', 'add', host]);
    await run('ip', ['-n', host, 'link', 'set', 'lo', 'up']);
    const code = await new Promise<number | null>((resolvePromise, reject) => {
      const c = spawn(
        'nsenter',
        [
          `--net=/run/netns/${host}`,
          process.execPath,
          fileURLToPath(import.meta.url),
          '--runs',
          String(o.runs),
          ...(o.compare ? ['--compare', o.compare] : []),
          '--inner',
          host,
          bin,
          work,
        ],
        { stdio: 'inherit' },
      );
      c.on('error', reject);
      c.on('close', resolvePromise);
    });
    if (code !== 0) process.exitCode = code ?? 1;
  } finally {
    await cleanup();
  }
}

/** Install another build's kata-cni.js as DIR/kata-cni, naming this Node as install-cni does. */
function installCompare(file: string, dir: string): void {
  const text = readFileSync(file, 'latin1');
  if (!text.startsWith('#!')) throw new Error(`--compare ${file}: not a kata-cni.js (no #! line)`);
  mkdirSync(dir, { recursive: true });
  const dest = join(dir, 'kata-cni');
  // A build whose first lines are shell (cni/build/shell-boot.ts) names this Node where it execs `node`.
  const installed = text.startsWith('#!/bin/sh\n')
    ? text.replace(' exec node ', ` exec '${process.execPath}' `)
    : `#!${process.execPath}${text.slice(text.indexOf('\n'))}`;
  writeFileSync(dest, installed, 'latin1');
  chmodSync(dest, 0o755);
}

const opts = parseArgs(process.argv.slice(2));
await (opts.inner ? inner(opts) : outer(opts));
