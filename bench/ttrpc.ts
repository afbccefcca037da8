/**
 * Benchmark: the ttRPC library on one unix-socket connection, against a raw reference.
 *
 * Two servers run in child processes (as a shim would): our TtrpcServer with the Task service, and
 * a raw `net` echo that answers every request with the very bytes our server answers (precomputed),
 * counting bytes instead of parsing anything. The bench process is the client: TtrpcClient for the
 * first, a socket writing precomputed request frames for the second. Per workload and in-flight
 * count (1, 16), for --seconds each, in alternating half-second slices of ours and the
 * reference (so that load from other work on the machine hits both alike), after a warm-up:
 *   - small: Task/State {id} -> StateResponse (60-90 bytes each way): round trips/s;
 *   - 1mib:  Task/Exec with a 1 MiB spec -> Empty: round trips/s and MiB/s of request payload.
 * Prints figures and the ratio ttrpc / raw (1.0 = no cost over the socket itself).
 *
 *   node dist/bench/ttrpc.js [--seconds 3] [--workloads small,1mib] [--flight 1,16]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { rootLogger } from '../host/log.js';
import {
  ExecProcessRequestSchema,
  StateRequestSchema,
  StateResponseSchema,
  Task,
} from '../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcClient } from '../ttrpc/client.js';
import { encodeHeader, MessageType } from '../ttrpc/frame.js';
import { RequestSchema, ResponseSchema } from '../ttrpc/generated/ttrpc/request_pb.js';
import { TtrpcServer } from '../ttrpc/server.js';
import { fmt } from './lib/stats.js';

const log = rootLogger().child({ bench: 'ttrpc' });
const MIB = 1 << 20;
const SLICE_S = 0.5;
const SPEC = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: new Uint8Array(MIB).fill(0x61) };
const STATE_ANSWER = { id: 'bench-task', bundle: '/run/containerd/io.containerd.runtime.v2.task/krt/bench-task', pid: 4242, status: 2 };

type Workload = 'small' | '1mib';

/** The request our client sends and the answer our server gives, as whole frames (the raw pair ignores stream ids). */
function frames(w: Workload): { request: Buffer; answer: Buffer } {
  const payload =
    w === 'small'
      ? toBinary(StateRequestSchema, create(StateRequestSchema, { id: 'bench-task' }))
      : toBinary(ExecProcessRequestSchema, create(ExecProcessRequestSchema, { id: 'bench-task', execId: 'e1', spec: SPEC }));
  const req = toBinary(RequestSchema, create(RequestSchema, { service: Task.typeName, method: w === 'small' ? 'State' : 'Exec', payload }));
  const answerPayload =
    w === 'small' ? toBinary(StateResponseSchema, create(StateResponseSchema, STATE_ANSWER)) : toBinary(EmptySchema, create(EmptySchema));
  const resp = toBinary(ResponseSchema, create(ResponseSchema, { payload: answerPayload }));
  const frame = (type: number, body: Uint8Array): Buffer =>
    Buffer.concat([encodeHeader({ length: body.length, streamId: 1, type, flags: 0 }), body]);
  return { request: frame(MessageType.REQUEST, req), answer: frame(MessageType.RESPONSE, resp) };
}

function parseArgs(argv: readonly string[]): { seconds: number; workloads: Workload[]; flight: number[]; serve?: string; echo?: string } {
  const o: { seconds: number; workloads: Workload[]; flight: number[]; serve?: string; echo?: string } = {
    seconds: 3,
    workloads: ['small', '1mib'],
    flight: [1, 16],
  };
  for (let i = 0; i < argv.length; i++) {
    const [a, v] = [argv[i], argv[i + 1] ?? ''];
    i++;
    if (a === '--seconds') o.seconds = Number(v);
    else if (a === '--workloads') o.workloads = v.split(',') as Workload[];
    else if (a === '--flight') o.flight = v.split(',').map(Number);
    else if (a === '--serve') o.serve = v;
    else if (a === '--echo') o.echo = v;
    else throw new Error(`unknown argument ${a} (use --seconds N, --workloads small,1mib, --flight 1,16)`);
  }
  if (!(o.seconds > 0) || o.flight.some((f) => !(f >= 1))) throw new Error('--seconds and --flight want positive numbers');
  return o;
}

/** Child: our server. */
async function serve(path: string): Promise<void> {
  const server = new TtrpcServer().register(Task, { state: () => STATE_ANSWER, exec: () => undefined });
  await server.listen({ path });
  process.stdout.write('ready\n');
}

/**
 * Child: the raw reference. A connection carries one workload, whose requests all have the same
 * length (read from the first frame's header): every that many bytes, it writes the answer frame.
 */
async function echo(path: string): Promise<void> {
  const small = frames('small');
  const big = frames('1mib');
  const server = createServer((s) => {
    let requestLength = 0;
    let answer = small.answer;
    let have = 0;
    let head = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      let d = chunk;
      if (requestLength === 0) {
        head = Buffer.concat([head, d]);
        if (head.length < 4) return;
        requestLength = head.readUInt32BE(0) + 10;
        answer = requestLength === big.request.length ? big.answer : small.answer;
        d = head;
      }
      have += d.length;
      while (have >= requestLength) {
        have -= requestLength;
        s.write(answer);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  process.stdout.write('ready\n');
}

function child(path: string, role: '--serve' | '--echo'): Promise<ChildProcess> {
  const p = spawn(process.execPath, [process.argv[1]!, role, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    p.stdout!.once('data', () => resolve(p));
    p.once('exit', (code) => reject(new Error(`bench server ${role} exited ${code}`)));
  });
}

/** Keep `flight` calls going for `seconds`; returns completed calls per second. */
async function drive(seconds: number, flight: number, call: () => Promise<unknown>): Promise<number> {
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: flight }, async () => {
      while (performance.now() < end) {
        await call();
        done++;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

/** The raw client: precomputed request frames, answers counted by their known length. */
async function rawClient(path: string, w: Workload): Promise<{ call(): Promise<void>; close(): void }> {
  const { request, answer } = frames(w);
  const s: Socket = createConnection(path);
  await new Promise<void>((r) => s.once('connect', () => r()));
  const waiting: (() => void)[] = [];
  let got = 0;
  s.on('data', (d: Buffer) => {
    got += d.length;
    while (got >= answer.length) {
      got -= answer.length;
      waiting.shift()?.();
    }
  });
  return {
    call: () =>
      new Promise<void>((r) => {
        waiting.push(r);
        s.write(request);
      }),
    close: () => s.destroy(),
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.serve) return serve(o.serve);
  if (o.echo) return echo(o.echo);
  const dir = mkdtempSync(join(tmpdir(), 'kr-bench-ttrpc-'));
  const children: ChildProcess[] = [];
  const cleanup = (): void => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(sig, () => {
      cleanup();
      process.exit(code);
    });
  }
  try {
    children.push(await child(join(dir, 'ttrpc.sock'), '--serve'), await child(join(dir, 'raw.sock'), '--echo'));
    const client = await TtrpcClient.connect(join(dir, 'ttrpc.sock'));
    console.log(`ttRPC on one unix-socket connection, ${o.seconds} s per row, load average ${loadavg()[0]!.toFixed(2)}`);
    console.log('workload  in flight   ttrpc calls/s   raw calls/s   ttrpc MiB/s   raw MiB/s   ttrpc/raw');
    for (const w of o.workloads) {
      const call =
        w === 'small'
          ? () => client.call(Task.method.state, { id: 'bench-task' })
          : () => client.call(Task.method.exec, { id: 'bench-task', execId: 'e1', spec: SPEC });
      for (const flight of o.flight) {
        const raw = await rawClient(join(dir, 'raw.sock'), w);
        await drive(Math.min(0.5, o.seconds), flight, call); // warm-up
        await drive(Math.min(0.5, o.seconds), flight, raw.call);
        // Alternate half-second slices of each, so that load from elsewhere hits both alike.
        let ours = 0;
        let ref = 0;
        const rounds = Math.max(1, Math.round(o.seconds / SLICE_S));
        for (let r = 0; r < rounds; r++) {
          ours += (await drive(o.seconds / rounds, flight, call)) / rounds;
          ref += (await drive(o.seconds / rounds, flight, raw.call)) / rounds;
        }
        raw.close();
        const mib = (n: number): string => (w === '1mib' ? fmt(n, 1) : '-');
        console.log(
          `${w.padEnd(8)}  ${String(flight).padStart(9)}   ${fmt(ours, 0).padStart(13)}   ${fmt(ref, 0).padStart(11)}   ${mib(ours).padStart(11)}   ${mib(ref).padStart(9)}   ${fmt(ours / ref, 2).padStart(9)}`,
        );
      }
    }
    client.close();
  } finally {
    cleanup();
  }
}

main().catch((e: unknown) => {
  log.error({ err: (e as Error).message }, 'bench failed');
  process.exitCode = 1;
});
