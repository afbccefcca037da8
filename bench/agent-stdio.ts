/**
 * Benchmark: process stdout through the guest agent (ReadStdout over the agent's virtio-serial
 * line protocol, base64 in JSON), from a container and from the guest's root environment, beside
 * two references measured in the same VM and run:
 *
 *   - guest pipe: the guest moving the same bytes through one pipe into /dev/null by itself
 *     (`cat ... | cat > /dev/null`, timed in the guest): what TCG allows before any transport;
 *   - line protocol: the legacy Exec returning 4 MB of text in one JSON string (its cap).
 *
 * The VM is the guest kit under TCG with a virtio-fs share (test/helpers/guest-vm.ts); one `cat`
 * of a --mib MiB random file (in the share, and in the container's rootfs) produces the bytes. One
 * process, not a loop: every exec of busybox from a virtio-fs rootfs re-reads the binary (cache=auto
 * drops the page cache at each open), which would make the container figure measure that instead.
 * Medians over --runs runs, MiB/s, and the ratios.
 *
 *   node dist/bench/agent-stdio.js [--mib 32] [--runs 3] [--len 1048576] [--inflight 2]
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { silentLogger } from '../host/log.js';
import type { AgentClient } from '../runtime-core/agent/client.js';
import { pumpOutput } from '../runtime-core/agent/process-io.js';
import { ensureGuestKit } from '../runtime-core/guest-kit/index.js';
import { GUEST_SHARED, bootGuestVm } from '../test/helpers/guest-vm.js';
import { containerSpec, makeBusyboxRootfs, ociProcess } from '../test/helpers/oci-bundle.js';
import { fmt, summarize } from './lib/stats.js';

function parseArgs(argv: readonly string[]): { mib: number; runs: number; len: number; inflight: number } {
  const o = { mib: 32, runs: 3, len: 1024 * 1024, inflight: 2 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]?.replace(/^--/, '') as keyof typeof o;
    if (!(k in o) || !Number.isFinite(Number(argv[i + 1])))
      throw new Error(`usage: agent-stdio [--mib N] [--runs N] [--len BYTES] [--inflight N] (bad ${argv[i]})`);
    o[k] = Number(argv[i + 1]);
  }
  return o;
}

const counting = (): Writable & { bytes: number } => {
  const w = new Writable({
    write(c: Buffer, _e, cb) {
      w.bytes += c.length;
      cb();
    },
  }) as Writable & { bytes: number };
  w.bytes = 0;
  return w;
};

/** Seconds from busybox time's "real 0m 3.78s". */
function realSeconds(stderr: string): number {
  const m = /real\s+(?:(\d+)h\s*)?(\d+)m\s*([\d.]+)s/.exec(stderr);
  if (!m) throw new Error(`no timing in ${JSON.stringify(stderr)}`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]);
}

async function guestPipe(c: AgentClient, n: number): Promise<number> {
  const r = await c.exec(['sh', '-c', `time sh -c 'cat ${GUEST_SHARED}/data | cat > /dev/null'`], { timeoutMs: 600_000 });
  return n / realSeconds(r.stderr);
}

async function lineProtocol(c: AgentClient): Promise<number> {
  const started = Date.now();
  const r = await c.exec(['sh', '-c', "head -c 4000000 /dev/zero | tr '\\0' a"], { timeoutMs: 600_000 });
  if (r.stdout.length !== 4_000_000) throw new Error(`Exec returned ${r.stdout.length} bytes`);
  return 4_000_000 / 1048576 / ((Date.now() - started) / 1000);
}

async function rootExec(c: AgentClient, eid: string, n: number, o: { len: number; inflight: number }): Promise<number> {
  const started = Date.now();
  await c.execProcess('', eid, ociProcess(['cat', `${GUEST_SHARED}/data`], { env: ['PATH=/bin:/usr/bin'] }));
  const sink = counting();
  await pumpOutput(c, '', eid, 'stdout', sink, o);
  if ((await c.waitProcess('', eid)) !== 0 || sink.bytes !== n << 20) throw new Error(`root exec moved ${sink.bytes} bytes`);
  return n / ((Date.now() - started) / 1000);
}

async function container(c: AgentClient, shared: string, cid: string, n: number, o: { len: number; inflight: number }): Promise<number> {
  const root = join(shared, cid, 'rootfs');
  makeBusyboxRootfs(root);
  writeFileSync(join(root, 'data', 'data'), randomBytes(n << 20));
  await c.createContainer({ container_id: cid, OCI: containerSpec(cid, ['cat', '/data/data']) });
  const sink = counting();
  const pump = pumpOutput(c, cid, cid, 'stdout', sink, o);
  const started = Date.now();
  await c.startContainer(cid);
  await pump;
  const s = (Date.now() - started) / 1000;
  if ((await c.waitProcess(cid, cid)) !== 0 || sink.bytes !== n << 20) throw new Error(`container moved ${sink.bytes} bytes`);
  await c.removeContainer(cid);
  return n / s;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const undo: (() => unknown)[] = [];
  const t = { teardown: (f: () => unknown) => undo.push(f) };
  try {
    const kit = await ensureGuestKit({ log: silentLogger() });
    const vm = await bootGuestVm(t, kit);
    writeFileSync(join(vm.shared, 'data'), randomBytes(o.mib << 20));
    const c = vm.client;
    const fig: Record<string, number[]> = {
      'guest pipe (reference)': [],
      'line protocol Exec, 4 MB': [],
      'root-env ExecProcess': [],
      container: [],
    };
    for (let r = 0; r < o.runs; r++) {
      fig['guest pipe (reference)']!.push(await guestPipe(c, o.mib));
      fig['line protocol Exec, 4 MB']!.push(await lineProtocol(c));
      fig['root-env ExecProcess']!.push(await rootExec(c, `bench${r}`, o.mib, o));
      fig.container!.push(await container(c, vm.shared, `bench${r}`, o.mib, o));
    }
    const med = (k: string): number => summarize(fig[k]!).median;
    console.log(
      `agent stdout throughput, ${o.mib} MiB per run, ${o.runs} runs, read len ${o.len}, ${o.inflight} in flight, load ${loadavg()[0]!.toFixed(1)}`,
    );
    console.log('path                          median MiB/s   min-max');
    for (const k of Object.keys(fig)) {
      const s = summarize(fig[k]!);
      console.log(`${k.padEnd(30)}${fmt(s.median).padStart(12)}   ${fmt(s.min)}-${fmt(s.max)}`);
    }
    console.log(`container / guest pipe:        ${(med('container') / med('guest pipe (reference)')).toFixed(2)}`);
    console.log(`container / line protocol:     ${(med('container') / med('line protocol Exec, 4 MB')).toFixed(2)}`);
    console.log(`root-env / line protocol:      ${(med('root-env ExecProcess') / med('line protocol Exec, 4 MB')).toFixed(2)}`);
  } finally {
    for (const f of undo.reverse()) await f();
  }
}

main().catch((e) => {
  console.error((e as Error).stack ?? String(e));
  process.exit(1);
});
