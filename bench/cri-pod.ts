/**
 * Benchmark: Kubernetes' path, RunPodSandbox to the container running, for the kata-resources
 * runtime handler beside containerd's default runc handler, in one run.
 *
 * Two private containerds (the CRI rig of the tests: README's runtime block, a [bridge, host-local]
 * conflist, local pause and busybox images): one with CRI's defaults for our handler, one with
 * disable_cgroup, disable_apparmor and restrict_oom_score_adj for runc (runc fails on this host's
 * hybrid cgroup v1 layout with the defaults: "can't get final child's PID from pipe"). Each run:
 * RunPodSandbox, CreateContainer (busybox `sleep 600`), StartContainer, ContainerStatus until
 * RUNNING; then StopPodSandbox + RemovePodSandbox outside the timed part. The handlers alternate,
 * so load from other work on the machine hits both alike; one unrecorded warm-up run each.
 *
 * Printed: median (min-max) in ms of RunPodSandbox, Create + Start, and the total, per handler,
 * and the ratio of the totals. Results go to stdout, logs to stderr.
 *
 *   node dist/bench/cri-pod.js [--runs 3]
 */
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { BUSYBOX_IMAGE, criRig, HANDLER, RUNC, type CriRig } from '../test/cri/helpers/cri-rig.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

function parseRuns(argv: readonly string[]): number {
  const i = argv.indexOf('--runs');
  if (i < 0) return 3;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error('--runs needs a positive integer');
  return n;
}

/** Teardowns run last-registered first, as tap runs them in the tests. */
class Teardowns {
  private readonly fns: (() => unknown)[] = [];
  teardown(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.fns.reverse()) {
      try {
        await fn();
      } catch (e) {
        process.stderr.write(`cleanup: ${(e as Error).message}\n`);
      }
    }
    this.fns.length = 0;
  }
}

interface Sample {
  run: number;
  createStart: number;
  total: number;
}

async function onePod(r: CriRig, handler: string, n: number): Promise<Sample> {
  const cfg = r.podConfig(`bench-${handler}-${n}`);
  mkdirSync(cfg.log_directory!, { recursive: true });
  const t0 = now();
  const pod = await r.cri.runPodSandbox(cfg, handler);
  const run = msSince(t0);
  const c = await r.cri.createContainer(
    pod,
    { metadata: { name: 'c' }, image: { image: BUSYBOX_IMAGE }, command: ['sleep', '600'], log_path: 'c.log' },
    cfg,
  );
  await r.cri.startContainer(c);
  const st = await r.cri.waitContainer(c, 'CONTAINER_RUNNING');
  const total = msSince(t0);
  if (st.state !== 'CONTAINER_RUNNING') throw new Error(`${handler}: the container is ${st.state}, not running`);
  await r.cri.stopPodSandbox(pod);
  await r.cri.removePodSandbox(pod);
  return { run, createStart: total - run, total };
}

const row = (xs: number[]): string => {
  const s = summarize(xs);
  return `${fmt(s.median, 0)} (${fmt(s.min, 0)}-${fmt(s.max, 0)})`;
};

async function main(): Promise<void> {
  const runs = parseRuns(process.argv.slice(2));
  const td = new Teardowns();
  const stop = (): void => void td.run().finally(() => process.exit(130));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const rigs: [string, CriRig][] = [
      [RUNC, await criRig(td, { kataCni: false, runcBaseline: true })],
      [HANDLER, await criRig(td, { kataCni: false })],
    ];
    const samples = new Map<string, Sample[]>(rigs.map(([h]) => [h, []]));
    for (const [h, r] of rigs) await onePod(r, h, 0); // warm-up: first image unpack, accelerator probe, guest-kit check
    for (let i = 1; i <= runs; i++) for (const [h, r] of rigs) samples.get(h)!.push(await onePod(r, h, i));
    const head = ['handler', 'RunPodSandbox', 'Create + Start', 'RunPodSandbox to running'];
    const rows = rigs.map(([h]) => {
      const s = samples.get(h)!;
      return [h, row(s.map((x) => x.run)), row(s.map((x) => x.createStart)), row(s.map((x) => x.total))];
    });
    const w = head.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')} |`;
    const out = [
      `CRI pod start, ${runs} runs per handler (load average ${loadavg()[0]!.toFixed(1)}), ms median (min-max)`,
      '',
      line(head),
      `| ${w.map((n, i) => (i === 0 ? '-'.repeat(n) : `${'-'.repeat(n - 1)}:`)).join(' | ')} |`,
      ...rows.map(line),
    ];
    const med = (h: string): number => summarize(samples.get(h)!.map((x) => x.total)).median;
    out.push('', `kata-resources / runc (RunPodSandbox to running): ${fmt(med(HANDLER) / med(RUNC), 1)}x`);
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await td.run();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`cri-pod: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
