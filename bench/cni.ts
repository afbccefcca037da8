/**
 * Benchmark: ADD and DEL latency of kata-cni chained after ptp, beside two references measured in
 * the same run and in the same way:
 *   - a bare `node -e 0` start (the floor of any Node plugin),
 *   - Debian's Go `tuning` plugin in the same chained position (same prevResult, same namespace),
 * plus `kata-cni` VERSION (start + bundle load, no network work). Every figure is taken both with
 * and without NODE_EXTRA_CA_CERTS (this machine sets it; Node then reads the CA bundle at start,
 * about 60 ms, which real hosts do not pay).
 *
 * The plugins are spawned directly, as a runtime does: the benchmark re-executes itself inside a
 * host namespace of its own (nsenter --net), so ptp's host side lands there. Each sample gets a
 * fresh pod namespace and a fresh ptp ADD (untimed); the variants are interleaved per sample so
 * load from other work on the machine spreads evenly. Only the plugin process (spawn to exit) is
 * timed. Namespaces are named kr-bench-cni-* and removed at the end, on failure and on Ctrl-C.
 *
 *   node dist/bench/cni.js [--runs 40]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../host/exec.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const PREFIX = 'kr-bench-cni-';
const CA = process.env.NODE_EXTRA_CA_CERTS;

interface Options {
  runs: number;
  inner?: { host: string; bin: string; work: string };
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { runs: 40 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') {
      o.runs = Number(argv[++i]);
      if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs wants a positive integer');
    } else if (a === '--inner') {
      o.inner = { host: argv[++i]!, bin: argv[++i]!, work: argv[++i]! };
    } else {
      throw new Error(`unknown argument ${a} (usage: node dist/bench/cni.js [--runs N])`);
    }
  }
  return o;
}

interface Outcome {
  ms: number;
  code: number | null;
  stdout: string;
}

function timed(file: string, args: string[], env: Record<string, string>, stdin: string): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    const t0 = now();
    const c = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'ignore'] });
    let stdout = '';
    c.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    c.on('error', reject);
    c.stdin.on('error', () => {});
    c.stdin.end(stdin);
    c.on('close', (code) => resolvePromise({ ms: msSince(t0), code, stdout }));
  });
}

// ---------------------------------------------------------------------------------------------
// Inner: runs inside the bench host namespace.

async function inner(o: Options): Promise<void> {
  const { host, bin, work } = o.inner!;
  const envs: [string, Record<string, string>][] = [['without CA certs', {}]];
  if (CA) envs.unshift(['with NODE_EXTRA_CA_CERTS', { NODE_EXTRA_CA_CERTS: CA }]);
  const samples = new Map<string, number[]>();
  const add = (k: string, ms: number): void => {
    const xs = samples.get(k) ?? [];
    xs.push(ms);
    samples.set(k, xs);
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

  for (let i = 0; i < o.runs; i++) {
    for (const [label, extra] of envs) {
      const env = { ...base, ...extra };
      add(`node -e 0|${label}`, must('node -e 0', await timed(process.execPath, ['-e', '0'], env, '')).ms);
      add(
        `kata-cni VERSION|${label}`,
        must('kata-cni VERSION', await timed(join(bin, 'kata-cni'), [], { ...env, CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}')).ms,
      );

      const pod = `${PREFIX}p-${randomBytes(3).toString('hex')}`;
      await run('ip', ['netns', 'add', pod]);
      try {
        const cni = (cmd: string): Record<string, string> => ({
          ...env,
          CNI_COMMAND: cmd,
          CNI_CONTAINERID: `bench${i}`,
          CNI_NETNS: `/run/netns/${pod}`,
          CNI_IFNAME: 'eth0',
        });
        const p = must('ptp ADD', await timed('/usr/lib/cni/ptp', [], cni('ADD'), conf(ptp)));
        const prev = JSON.parse(p.stdout) as Record<string, unknown>;
        const ka = must('kata-cni ADD', await timed(join(bin, 'kata-cni'), [], cni('ADD'), conf(kata, prev)));
        add(`kata-cni ADD|${label}`, ka.ms);
        const cached = ka.code === 0 ? JSON.parse(ka.stdout) : prev;
        add(`kata-cni DEL|${label}`, must('kata-cni DEL', await timed(join(bin, 'kata-cni'), [], cni('DEL'), conf(kata, cached))).ms);
        add(`tuning ADD|${label}`, must('tuning ADD', await timed('/usr/lib/cni/tuning', [], cni('ADD'), conf(tuning, prev))).ms);
        add(`tuning DEL|${label}`, must('tuning DEL', await timed('/usr/lib/cni/tuning', [], cni('DEL'), conf(tuning, prev))).ms);
        must('ptp DEL', await timed('/usr/lib/cni/ptp', [], cni('DEL'), conf(ptp, prev)));
      } finally {
        await run('ip', ['netns', 'del', pod], { reject: false });
      }
    }
    if ((i + 1) % 10 === 0) process.stderr.write(`bench:cni ${i + 1}/${o.runs} samples (host ${host})\n`);
  }

  const med = (k: string): number => summarize(samples.get(k) ?? []).median;
  const lines: string[] = [];
  lines.push(
    `kata-cni latency, ${o.runs} samples per figure, load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (${(await import('node:os')).cpus().length} CPUs), Node ${process.version}`,
  );
  lines.push('');
  lines.push('| what | env | median ms | p95 ms | min ms |');
  lines.push('|---|---|---:|---:|---:|');
  for (const what of ['node -e 0', 'kata-cni VERSION', 'kata-cni ADD', 'kata-cni DEL', 'tuning ADD', 'tuning DEL']) {
    for (const [label] of envs) {
      const s = summarize(samples.get(`${what}|${label}`) ?? []);
      lines.push(`| ${what} | ${label} | ${fmt(s.median)} | ${fmt(s.p95)} | ${fmt(s.min)} |`);
    }
  }
  lines.push('');
  lines.push(`| ratio (medians) | ${envs.map(([l]) => l).join(' | ')} |`);
  lines.push(`|---|${envs.map(() => '---:').join('|')}|`);
  const ratio = (a: string, b: string): string => envs.map(([l]) => fmt(med(`${a}|${l}`) / med(`${b}|${l}`), 2)).join(' | ');
  lines.push(`| kata-cni ADD / node -e 0 (goal <= 1.5) | ${ratio('kata-cni ADD', 'node -e 0')} |`);
  lines.push(`| kata-cni DEL / node -e 0 | ${ratio('kata-cni DEL', 'node -e 0')} |`);
  lines.push(`| kata-cni VERSION / node -e 0 | ${ratio('kata-cni VERSION', 'node -e 0')} |`);
  lines.push(`| kata-cni ADD / tuning ADD | ${ratio('kata-cni ADD', 'tuning ADD')} |`);
  lines.push(`| kata-cni DEL / tuning DEL | ${ratio('kata-cni DEL', 'tuning DEL')} |`);
  lines.push(
    `| kata-cni ADD - node -e 0 (ms of work beyond Node's start) | ${envs.map(([l]) => fmt(med(`kata-cni ADD|${l}`) - med(`node -e 0|${l}`))).join(' | ')} |`,
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

const opts = parseArgs(process.argv.slice(2));
await (opts.inner ? inner(opts) : outer(opts));
