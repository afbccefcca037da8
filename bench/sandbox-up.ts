/**
 * Benchmark: one sandbox up and down on the embedded guest kit (QEMU TCG + virtiofsd + tc redirect).
 *
 * 1. In-process `Sandbox.up` with the real QEMU driver and guest kit, in a pod namespace with a veth
 *    (as a CNI plugin leaves it), then `down`: one unrecorded cold run (first guest-kit check and
 *    accelerator probe of this state dir, module loading), then --runs measured runs. The phases are
 *    read from `sandbox.timings` (one entry per named step of up, plus "down"):
 *      network          netns + scan + endpoint attach (tap, ingress qdiscs, redirects)
 *      virtiofsd        shared dir + daemon until listening
 *      guest-kit check  resolve the cached kit (fingerprint of its inputs)
 *      VM start         QEMU spawn until QMP answered capabilities
 *      guest boot       VM started until the agent answers (TCG boot of the guest)
 *      agent setup      interfaces + routes + neighbours + storages (the guest applies them)
 *      down             the teardown (VM stop, virtiofsd, endpoint, journal), and the wall time of
 *                       down() including the state removal
 *    Host-side assembly = network + virtiofsd + guest-kit + VM start (the work of the host before
 *    the guest runs); "all but guest boot" adds agent setup (work the guest does under TCG).
 * 2. Through the CLI: `sandbox up` (node CLI + supervisor), the supervisor's RSS (VmRSS, RssAnon,
 *    RssFile from /proc) and QEMU's and virtiofsd's for context, then `sandbox down`.
 * 3. Node start: `node <cli> --version` and `node -e 0`, with this environment's NODE_EXTRA_CA_CERTS
 *    and without it, interleaved.
 *
 * Median (min-max). Everything lives in kr-bench-sb-* namespaces and a /tmp/kr-bench-sb-* dir,
 * removed at the end, on failure and on Ctrl-C. Results go to stdout, logs to stderr.
 *
 *   node dist/bench/sandbox-up.js [--runs 5] [--node-runs 10] [--skip-cli] [--skip-node]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../host/exec.js';
import { rootLogger } from '../host/log.js';
import { mountsUnder, unmountAllUnder } from '../host/mounts.js';
import { createNetns, deleteNetns, type NetnsRef } from '../host/netns.js';
import { readProcStatusField } from '../host/proc.js';
import { loadConfig } from '../runtime-core/config/load-config.js';
import { resolveGuestImage } from '../runtime-core/sandbox/guest-image.js';
import { Sandbox } from '../runtime-core/sandbox/sandbox.js';
import { StateStore } from '../runtime-core/state/store.js';
import { CLI, cliRun } from './lib/cli-run.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

const log = rootLogger().child({ bench: 'sandbox-up' });

interface Opts {
  runs: number;
  nodeRuns: number;
  cli: boolean;
  node: boolean;
}

function parseArgs(argv: readonly string[]): Opts {
  const o: Opts = { runs: 5, nodeRuns: 10, cli: true, node: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--runs') {
      o.runs = Number(v);
      i++;
      if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs wants a positive integer');
    } else if (a === '--node-runs') {
      o.nodeRuns = Number(v);
      i++;
      if (!Number.isInteger(o.nodeRuns) || o.nodeRuns < 1) throw new Error('--node-runs wants a positive integer');
    } else if (a === '--skip-cli') o.cli = false;
    else if (a === '--skip-node') o.node = false;
    else throw new Error(`unknown argument ${a} (use --runs N, --node-runs N, --skip-cli, --skip-node)`);
  }
  return o;
}

const out = (s = ''): void => {
  process.stdout.write(`${s}\n`);
};
const sum = (t: Record<string, number>, keys: readonly string[]): number => keys.reduce((a, k) => a + (t[k] ?? 0), 0);

/** Phases (name, timing keys) as printed. */
const PHASES: [string, string[]][] = [
  ['network (netns+scan+endpoint)', ['netns', 'scan', 'endpoint']],
  ['  scan', ['scan']],
  ['  endpoint attach', ['endpoint']],
  ['virtiofsd (dir + daemon ready)', ['virtiofs']],
  ['guest-kit check', ['guest-kit']],
  ['VM start (spawn -> QMP ready)', ['vm']],
  ['guest boot -> agent ready', ['agent']],
  ['agent setup (ifs+routes+neigh+storage)', ['interfaces', 'routes', 'neighbours', 'storages']],
  ['  interfaces', ['interfaces']],
  ['  routes', ['routes']],
  ['  neighbours', ['neighbours']],
  ['  storages (virtio-fs mount)', ['storages']],
];
const HOST_SIDE = ['netns', 'scan', 'endpoint', 'virtiofs', 'guest-kit', 'vm'];
const AGENT_SETUP = ['interfaces', 'routes', 'neighbours', 'storages'];

interface Run {
  t: Record<string, number>;
  upWall: number;
  downWall: number;
  clean: boolean;
}

function line(label: string, xs: number[], unit = 'ms', d = 1): string {
  const s = summarize(xs);
  return `${label.padEnd(40)} ${fmt(s.median, d).padStart(9)} ${unit}  (${fmt(s.min, d)}-${fmt(s.max, d)})`;
}

async function podNetwork(tag: string): Promise<{ pod: NetnsRef; host: NetnsRef }> {
  const host = await createNetns(`kr-bench-sb-${tag}-h`);
  const pod = await createNetns(`kr-bench-sb-${tag}-p`);
  await run('ip', ['-n', host.name!, 'link', 'add', 'veth0', 'mtu', '1400', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name!]);
  await run('ip', ['-n', host.name!, '-batch', '-'], { input: 'link set lo up\nlink set veth0 up\naddr add 10.99.0.1/24 dev veth0\n' });
  await run('ip', ['-n', pod.name!, '-batch', '-'], {
    input: 'link set lo up\naddr add 10.99.0.2/24 dev eth0\nlink set eth0 up\nroute add default via 10.99.0.1 dev eth0\n',
  });
  return { pod, host };
}

async function clean(pod: NetnsRef): Promise<boolean> {
  const links = JSON.parse((await run('ip', ['-n', pod.name!, '-j', 'link', 'show'])).stdout) as { ifname: string }[];
  const q = (await run('tc', ['-n', pod.name!, '-j', 'qdisc', 'show', 'dev', 'eth0'])).stdout.trim();
  return (
    !links.some((l) => l.ifname.endsWith('_kata')) && !(q ? (JSON.parse(q) as { kind: string }[]) : []).some((x) => x.kind === 'ingress')
  );
}

async function oneRun(
  id: string,
  pod: NetnsRef,
  store: StateStore,
  config: ReturnType<typeof loadConfig>,
  live: { sb?: Sandbox },
): Promise<Run> {
  const t0 = now();
  const sb = await Sandbox.up({ id, netns: pod.name!, config, store, log, guest: () => resolveGuestImage(config) });
  live.sb = sb;
  const upWall = msSince(t0);
  const t1 = now();
  await sb.down();
  const downWall = msSince(t1);
  live.sb = undefined;
  return { t: { ...sb.timings }, upWall, downWall, clean: await clean(pod) };
}

function kib(pid: number, key: string): number | undefined {
  const v = readProcStatusField(pid, key);
  return v === undefined ? undefined : Number.parseInt(v, 10);
}

function nodeStart(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = now();
  const r = spawnSync(process.execPath, args, { env, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}`);
  return msSince(t0);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const tag = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'kr-bench-sb-'));
  const stateDir = join(dir, 'state');
  const cfgFile = join(dir, 'configuration.toml');
  writeFileSync(cfgFile, `[runtime]\nstate_dir = "${stateDir}"\n`);
  const config = loadConfig(cfgFile, { log });
  const store = new StateStore(stateDir, log);
  let net: { pod: NetnsRef; host: NetnsRef } | undefined;
  const live: { sb?: Sandbox; cliId?: string } = {};
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    if (live.sb) await live.sb.down().catch((e: Error) => log.warn({ err: e.message }, 'down during cleanup failed'));
    if (live.cliId) await cliRun(['sandbox', 'down', live.cliId, '--config', cfgFile]).catch(() => undefined);
    if (net) {
      await deleteNetns(net.pod).catch(() => {});
      await deleteNetns(net.host).catch(() => {});
    }
    await unmountAllUnder(dir).catch(() => {});
    if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      void cleanup().finally(() => process.exit(130));
    });
  }

  try {
    net = await podNetwork(tag);
    out(
      `sandbox up/down bench: ${o.runs} runs after 1 cold run; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}; node ${process.version}`,
    );
    out(`pod namespace ${net.pod.name} (eth0 10.99.0.2/24, mtu 1400, default route), guest kit + QEMU TCG + virtiofsd, state under ${dir}`);
    out();

    const cold = await oneRun(`bench-${tag}-cold`, net.pod, store, config, live);
    const runs: Run[] = [];
    for (let i = 0; i < o.runs; i++) {
      runs.push(await oneRun(`bench-${tag}-${i}`, net.pod, store, config, live));
      process.stderr.write(`.. run ${i + 1}/${o.runs}: up ${fmt(runs[i]!.upWall, 0)} ms, down ${fmt(runs[i]!.downWall, 0)} ms\n`);
    }
    const dirty = runs.filter((r) => !r.clean).length + (cold.clean ? 0 : 1);

    out(`== in-process Sandbox.up / down, median (min-max) of ${runs.length} runs; cold run in brackets`);
    for (const [label, keys] of PHASES) {
      out(
        `${line(
          label,
          runs.map((r) => sum(r.t, keys)),
        )}   [cold ${fmt(sum(cold.t, keys))}]`,
      );
    }
    // Network, virtiofsd and the guest-kit check run side by side, so the host side is measured as
    // wall time: up, less the guest's boot and the setup the guest does under TCG.
    const hostSide = runs.map((r) => r.upWall - (r.t.agent ?? 0) - sum(r.t, AGENT_SETUP));
    const stepSum = runs.map((r) => sum(r.t, HOST_SIDE));
    const butBoot = runs.map((r) => r.upWall - (r.t.agent ?? 0));
    out(
      `${line(
        'up total (wall)',
        runs.map((r) => r.upWall),
      )}   [cold ${fmt(cold.upWall)}]`,
    );
    out(
      `${line(
        'down: teardown (sandbox.timings.down)',
        runs.map((r) => r.t.down ?? NaN),
      )}   [cold ${fmt(cold.t.down ?? NaN)}]`,
    );
    out(
      `${line(
        'down: wall incl. state removal',
        runs.map((r) => r.downWall),
      )}   [cold ${fmt(cold.downWall)}]`,
    );
    out(`residue after down: ${dirty === 0 ? 'none (no tap, no ingress qdisc)' : `${dirty} run(s) left a tap or qdisc`}`);
    out();
    const g = (x: number, goal: number): string => `${fmt(x)} ms, goal < ${goal} ms: ${x < goal ? 'met' : 'NOT met'}`;
    const hs = summarize(hostSide).median;
    const bb = summarize(butBoot).median;
    const dn = summarize(runs.map((r) => r.t.down ?? NaN)).median;
    const gb = summarize(runs.map((r) => r.t.agent ?? NaN)).median;
    out('== goals (medians)');
    out(`host-side assembly (wall: up less guest boot and guest-side setup): ${g(hs, 100)}`);
    out(`  the same steps one after another would take: ${fmt(summarize(stepSum).median)} ms`);
    out(`  everything but guest boot (adds agent setup, run by the guest under TCG, and the journal): ${fmt(bb)} ms`);
    out(`teardown: ${g(dn, 150)}`);
    out(`guest boot to agent ready: ${fmt(gb / 1000, 2)} s, goal < 6 s on TCG: ${gb < 6000 ? 'met' : 'NOT met'}`);
    out();

    if (o.cli) {
      out('== through the CLI (node CLI -> detached supervisor)');
      const id = `bench-${tag}-cli`;
      live.cliId = id;
      const up = await cliRun(['sandbox', 'up', '--id', id, '--netns', net.pod.name!, '--config', cfgFile, '--json']);
      if (up.code !== 0) throw new Error(`CLI up failed: ${up.stderr}`);
      const v = JSON.parse(up.stdout) as { pids: Record<string, number> };
      out(`sandbox up (wall, CLI start to JSON): ${fmt(up.ms)} ms`);
      await new Promise((r) => setTimeout(r, 500));
      const st = await cliRun(['sandbox', 'status', id, '--config', cfgFile, '--json']);
      out(`sandbox status (wall, incl. node start and agent queries): ${fmt(st.ms)} ms`);
      for (const role of ['supervisor', 'qemu', 'virtiofsd']) {
        const pid = v.pids[role];
        if (!pid) continue;
        const mib = (k: string): string => {
          const x = kib(pid, k);
          return x === undefined ? '-' : `${(x / 1024).toFixed(1)} MiB`;
        };
        out(
          `RSS ${role.padEnd(10)} pid ${String(pid).padEnd(7)} VmRSS ${mib('VmRSS').padStart(10)}  RssAnon ${mib('RssAnon').padStart(10)}  RssFile ${mib('RssFile').padStart(10)}  RssShmem ${mib('RssShmem').padStart(10)}`,
        );
      }
      const down = await cliRun(['sandbox', 'down', id, '--config', cfgFile, '--json']);
      const dj = JSON.parse(down.stdout) as { via?: string; timings?: { down?: number } };
      live.cliId = undefined;
      out(
        `sandbox down (wall, CLI start to exit): ${fmt(down.ms)} ms via ${dj.via}; the supervisor's teardown ${fmt(dj.timings?.down ?? NaN)} ms`,
      );
      out();
    }

    if (o.node) {
      const withEnv = { ...process.env };
      const without = { ...process.env };
      delete without.NODE_EXTRA_CA_CERTS;
      const ca = process.env.NODE_EXTRA_CA_CERTS;
      out(
        `== node start, ${o.nodeRuns} runs each, interleaved (NODE_EXTRA_CA_CERTS ${ca ? `= ${ca}` : 'is not set here: both columns are the same'})`,
      );
      const cases: [string, string[]][] = [
        ['node <cli> --version', [CLI, '--version']],
        ['node -e 0', ['-e', '0']],
      ];
      for (const [label, args] of cases) {
        nodeStart(args, withEnv);
        nodeStart(args, without);
        const a: number[] = [];
        const b: number[] = [];
        for (let i = 0; i < o.nodeRuns; i++) {
          a.push(nodeStart(args, withEnv));
          b.push(nodeStart(args, without));
        }
        const sa = summarize(a);
        const sb = summarize(b);
        out(
          `${label.padEnd(24)} with ${fmt(sa.median)} ms (${fmt(sa.min)}-${fmt(sa.max)})   without ${fmt(sb.median)} ms (${fmt(sb.min)}-${fmt(sb.max)})   difference ${fmt(sa.median - sb.median)} ms`,
        );
      }
      out();
    }
    out(
      `load average at the end ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} (2 shared cores: other work on the machine moves these figures by 10-30 %)`,
    );
    if (dirty > 0) process.exitCode = 1;
  } finally {
    await cleanup();
    if (existsSync(dir)) log.warn({ dir }, 'bench dir left (mounts?)');
  }
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
