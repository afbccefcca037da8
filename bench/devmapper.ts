/**
 * Benchmark: thin snapshot creation (devmapper/thin-device.ts createSnapshot) on a pool of loop
 * files, needing device-mapper: run it in the kernel lab,
 *
 *   npm run bench:devmapper        # = scripts/lab.sh --modules dm_mod,dm_thin_pool,loop -- node dist/bench/devmapper.js
 *   node dist/bench/devmapper.js [--runs 9]
 *
 * Per run (after one unrecorded warm-up), in ms:
 *   - snapshot, inactive origin: lock, state read, one `dmsetup message create_snap`, state writes;
 *   - snapshot, active origin:   the same plus `dmsetup suspend` and `dmsetup resume` of the origin;
 *   - reference: one bare `dmsetup status <pool>` spawn and one bare `dmsetup message <pool> 0
 *     create_snap` + `delete` pair, timed the same way in the same run.
 * Prints median, p95, min-max, and the snapshot medians as ratios of the bare spawn. Everything lives
 * under /tmp/kr-bench-dm-*, removed at the end (pool remove) and on SIGINT/SIGTERM.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { activateThin, createPool, createSnapshot, createThin, removePool } from '../devmapper/index.js';
import { run } from '../host/exec.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

function runsArg(argv: readonly string[]): number {
  const i = argv.indexOf('--runs');
  if (i < 0) return 9;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error('--runs wants a positive integer');
  return n;
}

const dmsetup = (args: string[]) => run('dmsetup', args, { env: { DM_DISABLE_UDEV: '1' } });

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = now();
  await fn();
  return msSince(t0);
}

async function main(): Promise<void> {
  const runs = runsArg(process.argv.slice(2));
  const dir = mkdtempSync(join(tmpdir(), 'kr-bench-dm-'));
  const stateDir = join(dir, 'state');
  const pool = 'kr-bench-pool';
  const cleanup = async (): Promise<void> => {
    await removePool({ stateDir, name: pool }).catch((e) => process.stderr.write(`cleanup: ${(e as Error).message}\n`));
    rmSync(dir, { recursive: true, force: true });
  };
  for (const s of ['SIGINT', 'SIGTERM'] as const)
    process.once(s, () => {
      void cleanup().then(() => process.exit(130));
    });
  try {
    await createPool({
      stateDir,
      name: pool,
      source: { kind: 'files', dataFile: join(dir, 'data'), metadataFile: join(dir, 'meta'), sizeBytes: 1024 ** 3 },
    });
    const inactive = await createThin({ stateDir, pool, sizeBytes: 256 * 1024 ** 2 });
    const active = await createThin({ stateDir, pool, sizeBytes: 256 * 1024 ** 2 });
    await activateThin({ stateDir, pool, id: active.id });
    const o = { stateDir, pool };
    const series = {
      'snapshot, inactive origin': () => createSnapshot({ ...o, originId: inactive.id }),
      'snapshot, active origin': () => createSnapshot({ ...o, originId: active.id }),
      'bare dmsetup status': () => dmsetup(['status', pool]),
      'bare create_snap + delete': async () => {
        await dmsetup(['message', pool, '0', 'create_snap', '999999', String(inactive.id)]);
        await dmsetup(['message', pool, '0', 'delete', '999999']);
      },
    };
    const samples: Record<string, number[]> = {};
    for (const [name, fn] of Object.entries(series)) {
      await fn(); // warm-up
      samples[name] = [];
      for (let i = 0; i < runs; i++) samples[name]!.push(await timed(fn));
    }
    const ref = summarize(samples['bare dmsetup status']!).median;
    process.stdout.write(`devmapper thin snapshots, ${runs} runs, load ${loadavg()[0]!.toFixed(1)}\n`);
    process.stdout.write(
      `${'what'.padEnd(28)}${'median'.padStart(9)}${'p95'.padStart(9)}${'min-max'.padStart(16)}${'/ status'.padStart(10)}\n`,
    );
    for (const [name, xs] of Object.entries(samples)) {
      const s = summarize(xs);
      process.stdout.write(
        `${name.padEnd(28)}${fmt(s.median).padStart(9)}${fmt(s.p95).padStart(9)}${`${fmt(s.min)}-${fmt(s.max)}`.padStart(16)}${fmt(s.median / ref, 2).padStart(10)}\n`,
      );
    }
  } finally {
    await cleanup();
  }
}

await main();
