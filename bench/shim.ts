/**
 * Benchmark: the containerd shim. In one run, interleaved round by round on the same machine state:
 *
 *   ctr kata     `ctr run --rm --runtime io.containerd.kata-resources.v2 IMG ID echo hi` (wall)
 *   sandbox      `kata-resources sandbox up` + `sandbox down` of the same guest and configuration
 *                through the CLI (wall of both): the VM alone
 *   ctr runc     `ctr run --rm IMG ID echo hi` with containerd's default io.containerd.runc.v2
 *
 * and prints ctr kata / sandbox (what the shim, the container in the guest and containerd add to
 * the VM) and ctr kata / ctr runc (the price of the VM). Then stdout throughput: `ctr task exec`
 * of `cat` of a 64 MiB file in a running container, MiB/s, for both runtimes.
 *
 * containerd is the test suite's private one (test/cni/helpers/containerd.ts: its own mount
 * namespace, root, state and socket; nothing of the host's containerd is touched), the image a
 * local busybox one, the shim installed into its opt dir. Everything is removed at the end, on
 * failure and on Ctrl-C. Results go to stdout, logs to stderr.
 *
 *   node dist/bench/shim.js [--runs 5] [--mib 64]
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run } from '../host/exec.js';
import { createNetns, deleteNetns } from '../host/netns.js';
import { buildBusyboxImage, startContainerd } from '../test/cni/helpers/containerd.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const CLI = join(REPO, 'dist/runtime-core/cli/main.js');
const IMG = 'docker.io/library/krt-bench:latest';

const out = (s = ''): void => {
  process.stdout.write(`${s}\n`);
};
const note = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, mib: { type: 'string', default: '64' } } });
  const runs = Number(values.runs);
  const mib = Number(values.mib);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs wants a positive integer');
  if (!Number.isInteger(mib) || mib < 1) throw new Error('--mib wants a positive integer');

  const cleanups: (() => unknown)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {});
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    const host = await createNetns(`kr-bench-shim-${randomBytes(3).toString('hex')}`);
    cleanups.push(() => deleteNetns(host));
    const opt = join('/tmp', `kr-bench-shim-opt-${randomBytes(3).toString('hex')}`);
    mkdirSync(join(opt, 'bin'), { recursive: true });
    cleanups.push(() => rmSync(opt, { recursive: true, force: true }));
    await run(process.execPath, [join(REPO, 'shim/build/install.mjs'), '--bin-dir', join(opt, 'bin')]);
    const c = await startContainerd({ teardown: (fn) => cleanups.push(fn) }, host, { optDir: opt });
    const stateDir = join(c.dir, 'kr-state');
    const cfg = join(c.dir, 'kr.toml');
    writeFileSync(cfg, `[runtime]\nstate_dir = "${stateDir}"\n`);
    mkdirSync(join(c.dir, 'img'));
    const tar = await buildBusyboxImage(join(c.dir, 'img'), '/bin/busybox', { files: { 'blob.bin': randomBytes(mib << 20) } });
    await c.ctr(['image', 'import', '--base-name', 'docker.io/library/krt-bench', tar]);
    const KATA = ['--runtime', 'io.containerd.kata-resources.v2', '--runtime-config-path', cfg];

    const timed = async (fn: () => Promise<unknown>): Promise<number> => {
      const t0 = now();
      await fn();
      return msSince(t0);
    };
    const ctrEcho = async (rt: string[], id: string): Promise<void> => {
      const r = await c.ctr(['run', ...rt, '--rm', IMG, id, 'echo', 'hi'], { reject: false });
      if (r.exitCode !== 0 || r.stdout !== 'hi\n') throw new Error(`ctr run ${id}: exit ${r.exitCode}: ${r.stderr}`);
    };
    const upDown = async (id: string): Promise<void> => {
      await run(process.execPath, [CLI, 'sandbox', 'up', '--id', id, '--config', cfg, '--json']);
      await run(process.execPath, [CLI, 'sandbox', 'down', id, '--config', cfg]);
    };

    note('warm-up: one of each, unrecorded');
    await ctrEcho(KATA, 'warm-kata');
    await upDown('warm-sb');
    await ctrEcho([], 'warm-runc');

    const kata: number[] = [];
    const sandbox: number[] = [];
    const runc: number[] = [];
    for (let i = 0; i < runs; i++) {
      note(`round ${i + 1}/${runs}`);
      kata.push(await timed(() => ctrEcho(KATA, `k${i}`)));
      sandbox.push(await timed(() => upDown(`s${i}`)));
      runc.push(await timed(() => ctrEcho([], `r${i}`)));
    }

    const throughput = async (rt: string[], id: string): Promise<number> => {
      await c.ctr(['run', ...rt, '-d', IMG, id, 'sleep', '3600']);
      try {
        // The exec's own cost (ctr, the shim, the agent) is measured with `true` and taken off.
        const overhead = await timed(() => c.ctr(['task', 'exec', '--exec-id', 'nop', id, 'true']));
        const ms = await timed(async () => {
          const r = await run('sh', [
            '-c',
            `nsenter --mount=${c.mntns} ctr -a ${c.socket} -n krt task exec --exec-id out ${id} cat /bin/blob.bin | wc -c`,
          ]);
          if (Number(r.stdout.trim()) !== mib << 20) throw new Error(`${id}: ${r.stdout.trim()} bytes arrived`);
        });
        return mib / (Math.max(ms - overhead, 1) / 1000);
      } finally {
        await c.ctr(['task', 'kill', '-s', 'KILL', id], { reject: false });
        for (let i = 0; i < 100 && !/STOPPED/.test((await c.ctr(['task', 'ls'], { reject: false })).stdout); i++)
          await new Promise((r) => setTimeout(r, 100));
        await c.ctr(['task', 'rm', '-f', id], { reject: false });
        await c.ctr(['container', 'rm', id], { reject: false });
      }
    };
    note(`stdout throughput: ${mib} MiB through ctr task exec`);
    const kataMibs = await throughput(KATA, 'tk');
    const runcMibs = await throughput([], 'tr');

    const [k, s, r] = [summarize(kata), summarize(sandbox), summarize(runc)];
    out(
      `containerd shim bench: ${runs} rounds, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} (${cpus().length} CPUs)`,
    );
    out('');
    out('what                                        median (min-max) ms');
    out(`ctr run --rm echo hi, kata-resources shim  ${fmt(k.median)} (${fmt(k.min)}-${fmt(k.max)})`);
    out(`sandbox up + down (CLI), same guest         ${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})`);
    out(`ctr run --rm echo hi, runc                  ${fmt(r.median)} (${fmt(r.min)}-${fmt(r.max)})`);
    out('');
    out(`ratio ctr kata / sandbox up+down: ${(k.median / s.median).toFixed(2)}x (what the shim, the container and containerd add)`);
    out(`ratio ctr kata / ctr runc:        ${(k.median / r.median).toFixed(1)}x (the price of the VM)`);
    out('');
    out(
      `stdout throughput (${mib} MiB, ctr task exec cat): kata-resources ${kataMibs.toFixed(1)} MiB/s, runc ${runcMibs.toFixed(1)} MiB/s`,
    );
  } finally {
    await cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:shim failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
