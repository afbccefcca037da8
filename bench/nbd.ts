/**
 * Benchmark: sequential read and write throughput of the TypeScript NBD client (nbd/) against
 * nbdkit's memory plugin over a unix socket, beside nbdcopy (libnbd-bin) on the same export in
 * the same run: --size bytes (default 1 GiB) in --request-size requests (default 256 KiB), with 1
 * and 16 requests in flight, one connection each (nbdcopy --connections=1 --requests=N). nbdcopy
 * writes from a file of random bytes in /dev/shm (page cache; --no-extents -S 0 so it sends every
 * byte) and reads to null:; the client writes from and reads into buffers it reuses.
 *
 * Each configuration runs --rounds times (default 5), interleaved, so that a client run and its
 * nbdcopy run are neighbours. Printed: the best and the median MiB/s; the ratio client/nbdcopy as
 * the median over rounds of the ratio within a round (goal >= 0.8: the machine is shared, so
 * only neighbours compare); and where the time went: CPU of the client process (or of nbdcopy)
 * and of nbdkit, user/system, per GiB, in the best round.
 *
 *   node dist/bench/nbd.js [--size BYTES] [--request-size BYTES] [--rounds N] [--depths 1,16]
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../host/daemon.js';
import { run } from '../host/exec.js';
import { rootLogger } from '../host/log.js';
import { sleep } from '../host/retry.js';
import { connectNbd } from '../nbd/connect.js';
import { fmt, summarize } from './lib/stats.js';

const log = rootLogger().child({ bench: 'nbd' });
const MiB = 1024 * 1024;

interface Opts {
  size: number;
  requestSize: number;
  rounds: number;
  depths: number[];
}

function parseArgs(argv: readonly string[]): Opts {
  const o: Opts = { size: 1024 * MiB, requestSize: 256 * 1024, rounds: 5, depths: [1, 16] };
  for (let i = 0; i < argv.length; i += 2) {
    const [a, v = ''] = [argv[i], argv[i + 1]];
    if (a === '--size') o.size = Number(v);
    else if (a === '--request-size') o.requestSize = Number(v);
    else if (a === '--rounds') o.rounds = Number(v);
    else if (a === '--depths') o.depths = v.split(',').map(Number);
    else throw new Error(`unknown argument ${a} (use --size, --request-size, --rounds, --depths)`);
  }
  if (o.size % o.requestSize !== 0) throw new Error('--size must be a multiple of --request-size');
  return o;
}

/** utime + stime of a process (clock ticks; 100 per second here) from /proc/PID/stat, and of its reaped children. */
function cpuTicks(pid: number | 'self'): { user: number; sys: number; childUser: number; childSys: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return { user: Number(rest[11]), sys: Number(rest[12]), childUser: Number(rest[13]), childSys: Number(rest[14]) };
}

interface Sample {
  mibs: number;
  /** CPU ms of the client side (this process or nbdcopy) and of nbdkit: user/system. */
  client: [number, number];
  server: [number, number];
}

async function measure(server: Daemon, size: number, isNbdcopy: boolean, fn: () => Promise<void>): Promise<Sample> {
  const s0 = cpuTicks(server.pid);
  const c0 = cpuTicks('self');
  const u0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await fn();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const u = process.cpuUsage(u0);
  const s1 = cpuTicks(server.pid);
  const c1 = cpuTicks('self');
  const client: [number, number] = isNbdcopy
    ? [(c1.childUser - c0.childUser) * 10, (c1.childSys - c0.childSys) * 10]
    : [u.user / 1000, u.system / 1000];
  return { mibs: size / MiB / secs, client, server: [(s1.user - s0.user) * 10, (s1.sys - s0.sys) * 10] };
}

/** Sequential I/O over the whole export, `depth` requests in flight, each slot with its own buffer. */
async function tsRun(uri: string, o: Opts, depth: number, op: 'read' | 'write', bufs: Buffer[]): Promise<void> {
  const c = await connectNbd(uri, { maxInFlight: depth });
  let next = 0;
  const count = o.size / o.requestSize;
  const worker = async (slot: number): Promise<void> => {
    for (let i = next++; i < count; i = next++)
      await (op === 'read' ? c.read(i * o.requestSize, bufs[slot]!) : c.write(i * o.requestSize, bufs[slot]!));
  };
  await Promise.all(Array.from({ length: depth }, (_, k) => worker(k)));
  await c.close();
}

function nbdcopy(args: string[]): Promise<unknown> {
  return run('nbdcopy', ['--no-extents', '-S', '0', '--connections=1', ...args], { timeoutMs: 600_000 });
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const dir = mkdtempSync('/dev/shm/kr-bench-nbd-');
  let server: Daemon | undefined;
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  process.once('SIGINT', () => {
    server?.signal('SIGKILL');
    cleanup();
    process.exit(130);
  });
  try {
    const sock = join(dir, 'nbd.sock');
    const uri = `nbd+unix:///?socket=${sock}`;
    server = await startDaemon({
      name: 'nbdkit',
      file: 'nbdkit',
      args: ['-f', '--exit-with-parent', '-U', sock, 'memory', String(o.size)],
      log,
    });
    for (let i = 0; i < 200; i++) {
      const up = await new Promise<boolean>((r) =>
        netConnect({ path: sock })
          .once('connect', function (this: import('node:net').Socket) {
            this.destroy();
            r(true);
          })
          .once('error', () => r(false)),
      );
      if (up) break;
      await sleep(25);
    }
    // nbdcopy's source: random bytes in tmpfs (read from the page cache).
    const srcFile = join(dir, 'source.img');
    const fd = openSync(srcFile, 'w');
    const chunk = Buffer.alloc(16 * MiB);
    for (let off = 0; off < o.size; off += chunk.length) writeSync(fd, randomFillSync(chunk), 0, Math.min(chunk.length, o.size - off));
    closeSync(fd);
    const maxDepth = Math.max(...o.depths);
    const src = Array.from({ length: maxDepth }, () => randomFillSync(Buffer.allocUnsafe(o.requestSize)));
    const bufs = Array.from({ length: maxDepth }, () => Buffer.allocUnsafe(o.requestSize));
    const rs = `--request-size=${o.requestSize}`;
    const configs: { name: string; op: 'write' | 'read'; depth: number; copy: boolean; fn: () => Promise<unknown> }[] = [];
    for (const depth of o.depths) {
      configs.push({ name: `write qd${depth} client`, op: 'write', depth, copy: false, fn: () => tsRun(uri, o, depth, 'write', src) });
      configs.push({
        name: `write qd${depth} nbdcopy`,
        op: 'write',
        depth,
        copy: true,
        fn: () => nbdcopy([rs, `--requests=${depth}`, srcFile, uri]),
      });
    }
    for (const depth of o.depths) {
      configs.push({ name: `read qd${depth} client`, op: 'read', depth, copy: false, fn: () => tsRun(uri, o, depth, 'read', bufs) });
      configs.push({
        name: `read qd${depth} nbdcopy`,
        op: 'read',
        depth,
        copy: true,
        fn: () => nbdcopy([rs, `--requests=${depth}`, uri, 'null:']),
      });
    }
    const samples = new Map<string, Sample[]>(configs.map((c) => [c.name, []]));
    for (let round = 0; round < o.rounds; round++) {
      for (const c of configs) {
        const s = await measure(server, o.size, c.copy, async () => {
          await c.fn();
        });
        log.info({ round, config: c.name, mibs: s.mibs }, 'sample');
        samples.get(c.name)!.push(s);
      }
    }
    const gib = o.size / (1024 * MiB);
    const perGiB = (ms: number): string => fmt(ms / gib, 0);
    console.log(`NBD throughput: ${gib} GiB, ${o.requestSize / 1024} KiB requests, nbdkit memory over a unix socket, ${o.rounds} rounds`);
    console.log('');
    console.log('config               best MiB/s  median MiB/s  ratio  client user/sys ms/GiB  nbdkit user/sys ms/GiB');
    let met = true;
    for (const c of configs) {
      const ss = samples.get(c.name)!;
      const ref = samples.get(`${c.op} qd${c.depth} nbdcopy`)!;
      const best = ss.reduce((a, b) => (b.mibs > a.mibs ? b : a));
      const ratio = summarize(ss.map((s, i) => s.mibs / ref[i]!.mibs)).median;
      if (!c.copy && ratio < 0.8) met = false;
      const cpu = (x: [number, number]): string => `${perGiB(x[0])}/${perGiB(x[1])}`;
      console.log(
        `${c.name.padEnd(20)} ${fmt(best.mibs, 0).padStart(10)}  ${fmt(summarize(ss.map((s) => s.mibs)).median, 0).padStart(12)}  ${(c.copy ? '' : `${fmt(ratio, 2)}x`).padStart(5)}  ${cpu(best.client).padStart(22)}  ${cpu(best.server).padStart(22)}`,
      );
    }
    console.log('');
    console.log('nbdcopy writes read their source from a file in /dev/shm; the client writes from a buffer in memory.');
    console.log(`goal: client >= 0.8x nbdcopy (median paired ratio) in every configuration: ${met ? 'met' : 'not met'}`);
    process.exitCode = 0;
  } finally {
    await server?.stop({ graceMs: 2000 });
    cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
