/**
 * Benchmark: one virtiofsd per sandbox (the C daemon of QEMU 7.2 unless --daemon says otherwise).
 *
 * Per sandbox mode (chroot, namespace), over --runs runs (after one unrecorded warm-up that also
 * fills the flavor-detection cache):
 *   - ready:   VirtiofsDaemon.start() from the call until the socket is seen listening in
 *              /proc/net/unix (what a VMM may connect to), in ms; also without the setpriv wrapper;
 *   - rss:     VmRSS of the daemon and its children once listening (idle), in KiB;
 *   - procs:   how many processes that is (namespace mode forks a sandboxed child);
 *   - reply:   a vhost-user client connects and gets its GET_FEATURES reply, ms after ready;
 *   - stop:    stop() (TERM, socket and pid files removed), in ms;
 *   - attach / detach: the whole plugin (shared dir with its 3 mounts + daemon; stop + unmount +
 *              remove), in ms, with the processes spawned per attach.
 * Prints median, p95 and min-max. Everything lives under /tmp/kr-bench-vfs-*, removed at the end
 * and on SIGINT/SIGTERM. Results go to stdout, logs to stderr.
 *
 *   node dist/bench/virtiofsd.js [--runs 15] [--modes chroot,namespace] [--daemon PATH]
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { loadavg } from 'node:os';
import { spawnCount } from '../host/exec.js';
import { rootLogger } from '../host/log.js';
import { mountsUnder, unmountAllUnder } from '../host/mounts.js';
import { childPids, rssKiB } from '../host/proc.js';
import { resolveVirtiofsConfig, type SandboxMode } from '../virtiofsd-manager/config.js';
import { detectFlavor } from '../virtiofsd-manager/flavor.js';
import { VirtiofsPlugin } from '../virtiofsd-manager/plugin.js';
import { VirtiofsDaemon } from '../virtiofsd-manager/virtiofsd.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

const log = rootLogger().child({ bench: 'virtiofsd' });

function parseArgs(argv: readonly string[]): { runs: number; modes: SandboxMode[]; daemon: string | undefined } {
  const o = { runs: 15, modes: ['chroot', 'namespace'] as SandboxMode[], daemon: undefined as string | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--runs') {
      o.runs = Number(v);
      i++;
      if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs wants a positive integer');
    } else if (a === '--modes') {
      o.modes = (v ?? '').split(',') as SandboxMode[];
      i++;
    } else if (a === '--daemon') {
      o.daemon = v;
      i++;
    } else throw new Error(`unknown argument ${a} (use --runs N, --modes chroot,namespace, --daemon PATH)`);
  }
  return o;
}

/** RSS of a process and its descendants, and how many processes that is. */
function treeRss(pid: number): { kib: number; procs: number } {
  let kib = 0;
  let procs = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    const r = rssKiB(p);
    if (r === undefined) continue;
    kib += r;
    procs++;
    stack.push(...childPids(p));
  }
  return { kib, procs };
}

function getFeatures(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no vhost-user reply within 5 s'));
    }, 5000);
    s.on('connect', () => {
      const h = Buffer.alloc(12);
      h.writeUInt32LE(1, 0);
      h.writeUInt32LE(1, 4);
      s.write(h);
    });
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= 20) {
        clearTimeout(timer);
        s.end();
        resolve();
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function row(name: string, xs: number[], unit: string, decimals = 1): string {
  const s = summarize(xs);
  return `${name.padEnd(22)} ${fmt(s.median, decimals).padStart(9)} ${fmt(s.p95, decimals).padStart(9)} ${`${fmt(s.min, decimals)}-${fmt(s.max, decimals)}`.padStart(17)}  ${unit}`;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const root = mkdtempSync('/tmp/kr-bench-vfs-');
  const cleanup = async (): Promise<void> => {
    await unmountAllUnder(root).catch(() => undefined);
    if (mountsUnder(root).length === 0) rmSync(root, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      void cleanup().finally(() => process.exit(130));
    });
  }
  let errors = 0;
  try {
    const cfgBase = resolveVirtiofsConfig(opts.daemon ? { daemonPath: opts.daemon } : {});
    const flavor = await detectFlavor(cfgBase.daemonPath);
    console.log(
      `virtiofsd ${cfgBase.daemonPath}: ${flavor.kind} ${flavor.version}; ${opts.runs} runs per mode; load ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    mkdirSync(`${root}/src`);
    for (const mode of opts.modes) {
      const ready: number[] = [];
      const bare: number[] = [];
      const rss: number[] = [];
      const procs: number[] = [];
      const reply: number[] = [];
      const stop: number[] = [];
      const attach: number[] = [];
      const detach: number[] = [];
      const spawns: number[] = [];
      const spawnsDetach: number[] = [];
      const cfg = { ...resolveVirtiofsConfig({ ...(opts.daemon ? { daemonPath: opts.daemon } : {}), sandbox: mode }), log };
      for (let i = -1; i < opts.runs; i++) {
        const rec = i >= 0;
        try {
          // Daemon alone: ready, RSS, stop.
          const socketPath = `${root}/d${i + 1}.sock`;
          let t0 = now();
          const v = await VirtiofsDaemon.start({ ...cfg, sourceDir: `${root}/src`, socketPath });
          const tReady = msSince(t0);
          await new Promise((r) => setTimeout(r, 20)); // let it settle (namespace child set up)
          const m = treeRss(v.pid!);
          t0 = now();
          await v.stop();
          const tStop = msSince(t0);
          // A second daemon answers a vhost-user client (the C daemon exits after it: one-shot).
          const v2 = await VirtiofsDaemon.start({ ...cfg, sourceDir: `${root}/src`, socketPath });
          t0 = now();
          await getFeatures(socketPath);
          const tReply = msSince(t0);
          await v2.stop();
          // The same start without the setpriv --pdeathsig wrapper (one exec less).
          t0 = now();
          const v3 = await VirtiofsDaemon.start({ ...cfg, pdeathsig: false, sourceDir: `${root}/src`, socketPath });
          const tBare = msSince(t0);
          await v3.stop();
          // The whole plugin.
          const p = new VirtiofsPlugin();
          const ctx = {
            sandboxId: `b${i + 1}`,
            netns: undefined,
            log,
            netlink: undefined as never,
            sysfs: undefined as never,
            runDir: `${root}/run${i + 1}`,
          };
          const s0 = spawnCount();
          t0 = now();
          const a = await p.attach(ctx, { root: `${root}/kr`, sandbox: mode });
          const tAttach = msSince(t0);
          const nSpawn = spawnCount() - s0;
          const s1 = spawnCount();
          t0 = now();
          await p.detach(ctx, a);
          const tDetach = msSince(t0);
          const nSpawnDetach = spawnCount() - s1;
          if (rec) {
            ready.push(tReady);
            bare.push(tBare);
            rss.push(m.kib);
            procs.push(m.procs);
            stop.push(tStop);
            reply.push(tReply);
            attach.push(tAttach);
            detach.push(tDetach);
            spawns.push(nSpawn);
            spawnsDetach.push(nSpawnDetach);
          }
        } catch (e) {
          errors++;
          log.error({ err: e, mode, run: i }, 'run failed');
        }
      }
      console.log(`\nsandbox=${mode}${' '.repeat(Math.max(0, 13 - mode.length))}       median       p95          min-max`);
      console.log(row('ready (start->LISTEN)', ready, 'ms'));
      console.log(row('ready, no setpriv', bare, 'ms'));
      console.log(row('rss idle', rss, `KiB (${fmt(summarize(rss).median / 1024, 2)} MiB)`, 0));
      console.log(row('processes', procs, '', 0));
      console.log(row('vhost-user reply', reply, 'ms after ready'));
      console.log(row('stop', stop, 'ms'));
      console.log(row('plugin attach', attach, 'ms (dirs + 3 mounts + daemon)'));
      console.log(row('plugin detach', detach, 'ms (stop + unmount + remove)'));
      console.log(row('spawns per attach', spawns, '(mount x3, daemon)', 0));
      console.log(row('spawns per detach', spawnsDetach, '(umount -R)', 0));
    }
    console.log(`\nerrors: ${errors}`);
  } finally {
    await cleanup();
  }
  if (errors > 0) process.exitCode = 1;
}

await main();
