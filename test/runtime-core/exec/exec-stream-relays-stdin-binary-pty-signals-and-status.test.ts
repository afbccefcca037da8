/**
 * The exec stream end to end on the host, without a VM: the real guest AgentServer on a unix socket
 * (kata-monitor built with gcc), the supervisor's management server with its exec upgrade, and the
 * CLI's client. What a VM adds (virtio-serial, TCG) is covered by the Kata-configuration e2e test.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createNetServer, type Socket } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { spawnRunner } from '../../../guest/agent/runner.js';
import { AgentServer } from '../../../guest/agent/server.js';
import { serveStream } from '../../../guest/agent/transport.js';
import { isKataError } from '../../../host/errors.js';
import { silentLogger } from '../../../host/log.js';
import { AgentClient } from '../../../runtime-core/agent/client.js';
import { execStream, type ExecIo } from '../../../runtime-core/cli/exec-client.js';
import type { ExecRequest } from '../../../runtime-core/exec/session.js';
import * as F from '../../../runtime-core/exec/frames.js';
import { buildMonitor } from '../../../runtime-core/guest-kit/monitor.js';
import type { SandboxService } from '../../../runtime-core/sandbox/service.js';
import { serveManagement } from '../../../runtime-core/supervisor/server.js';
import { processesMentioning, waitFor } from '../../helpers/sandbox.js';

class Sink extends Writable {
  chunks: Buffer[] = [];
  onChunk: ((c: Buffer) => void) | undefined;
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.chunks.push(c);
    this.onChunk?.(c);
    cb();
  }
  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** A stand-in for a terminal's stdout: rows/columns and 'resize' events, as a tty.WriteStream has. */
class FakeTty extends Sink {
  isTTY = true;
  rows = 33;
  columns = 101;
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'krt-execstream-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const monitor = join(dir, 'kata-monitor');
  await buildMonitor(monitor);
  const server = new AgentServer({
    network: { ip: undefined as never },
    storage: { run: spawnRunner, sysfs: '/nonexistent', dev: '/nonexistent', mountsFile: '/proc/self/mounts' },
    run: spawnRunner,
    containers: { monitor, ioRoot: join(dir, 'io'), bundleRoot: join(dir, 'b'), runcRoot: join(dir, 'r'), drainIdleMs: 300 },
    shutdown: () => {},
  });
  const agentSock = join(dir, 'agent.sock');
  const agentSrv = createNetServer((s) => serveStream(server, s));
  await new Promise<void>((r) => agentSrv.listen(agentSock, r));
  const client = new AgentClient({ socketPath: agentSock, log: silentLogger() });
  const mgmtSock = join(dir, 'supervisor.sock');
  const mgmt = await serveManagement(mgmtSock, {} as SandboxService, silentLogger(), () => client);
  t.teardown(() => {
    mgmt.close();
    client.close();
    agentSrv.close();
  });
  return { dir, mgmtSock };
}

const req = (argv: string[], extra: Partial<ExecRequest> = {}): ExecRequest => ({
  argv,
  terminal: false,
  env: [`PATH=${process.env.PATH}`],
  ...extra,
});

async function run(sock: string, r: ExecRequest, input?: Buffer | Readable, stdout: Sink = new Sink()) {
  const stderr = new Sink();
  const stdin = input instanceof Readable ? input : Readable.from(input ? [input] : []);
  const io: ExecIo = { stdin, stdout, stderr };
  const x = await execStream(sock, r, io);
  return { ...x, stdout: stdout.data, stderr: stderr.data };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('binary output, stdin and exit status are relayed exactly', async (t) => {
  const { mgmtSock } = await setup(t);
  const bin = await run(mgmtSock, req(['printf', '\\377\\376\\200\\000\\n']));
  t.same([...bin.stdout], [0xff, 0xfe, 0x80, 0, 0x0a], 'bytes ff fe 80 00 0a, no UTF-8 decoding');
  const input = randomBytes(5 * 1024 * 1024 + 3);
  const cat = await run(mgmtSock, req(['sh', '-c', 'cat; echo to-stderr >&2; exit 7']), input);
  t.equal(cat.status, 7, "the exit status is the command's");
  t.equal(sha(cat.stdout), sha(input), 'stdin came back byte for byte through cat');
  t.equal(cat.stderr.toString(), 'to-stderr\n', 'stderr is a stream of its own');
  const nul = await run(mgmtSock, req(['head', '-c', '4000000', '/dev/zero']));
  t.equal(nul.stdout.length, 4_000_000, '4 MB of NUL bytes (the old line-JSON relay timed out on them)');
  t.ok(
    nul.stdout.every((b) => b === 0),
    'all NUL',
  );
});

t.test('50 MiB of binary output arrive intact (hash)', async (t) => {
  const { dir, mgmtSock } = await setup(t);
  const file = join(dir, 'blob');
  const blob = randomBytes(50 * 1024 * 1024);
  writeFileSync(file, blob);
  const r = await run(mgmtSock, req(['cat', file]));
  t.equal(r.status, 0);
  t.equal(r.stdout.length, blob.length, 'every byte (the old relay cut at 4 MiB and said nothing)');
  t.equal(sha(r.stdout), sha(blob), 'the same bytes');
});

/** A destination slower than the stream: its buffer fills, so the exit arrives while it still drains. */
class SlowSink extends Sink {
  constructor() {
    super({ highWaterMark: 64 * 1024 });
  }
  override _write(c: Buffer, e: BufferEncoding, cb: () => void): void {
    setTimeout(() => super._write(c, e, cb), 5);
  }
}

t.test('a slow local destination: the exit status after every byte, not a closed-stream error', async (t) => {
  const { dir, mgmtSock } = await setup(t);
  const file = join(dir, 'blob8');
  const blob = randomBytes(8 * 1024 * 1024);
  writeFileSync(file, blob);
  const r = await run(mgmtSock, req(['sh', '-c', `cat ${file}; exit 5`]), undefined, new SlowSink());
  t.equal(r.status, 5, "the command's status (the supervisor's close after EXIT is no failure)");
  t.equal(sha(r.stdout), sha(blob), 'every byte');
});

t.test('output streams as it comes: the first line arrives while the command still runs', async (t) => {
  const { dir, mgmtSock } = await setup(t);
  const gate = join(dir, 'gate');
  const out = new Sink();
  // The command only ends once the test saw its first line: a buffered relay would deadlock here.
  out.onChunk = (c) => {
    if (c.toString().includes('first')) writeFileSync(gate, '');
  };
  const r = await run(mgmtSock, req(['sh', '-c', `echo first; while [ ! -e ${gate} ]; do sleep 0.05; done; echo second`]), undefined, out);
  t.equal(r.stdout.toString(), 'first\nsecond\n');
  t.equal(r.status, 0);
});

t.test('a pty with the window size, resized while running, and stdin typed into it', async (t) => {
  const { mgmtSock } = await setup(t);
  const tty = new FakeTty();
  const stdin = new PassThrough();
  let resized = false;
  tty.onChunk = (c) => {
    if (!resized && c.toString().includes('33 101')) {
      resized = true;
      tty.rows = 40;
      tty.columns = 120;
      tty.emit('resize');
    }
    if (c.toString().includes('40 120')) stdin.write('typed\n');
  };
  // The guest side polls its own window size, so no timing is assumed: it goes on once the resize arrived.
  const script = 'tty; stty size; while [ "$(stty size)" = "33 101" ]; do sleep 0.05; done; stty size; read x; echo "got=$x"; exit 3';
  const r = await run(mgmtSock, req(['sh', '-c', script], { terminal: true, env: [`PATH=${process.env.PATH}`, 'TERM=xterm'] }), stdin, tty);
  const text = r.stdout.toString();
  t.match(text, /\/dev\/pts\/\d+/, 'the command has a terminal');
  t.match(text, /33 101/, 'with the size of the local terminal at start');
  t.match(text, /40 120/, 'and the new size after a resize');
  t.match(text, /got=typed/, 'what is typed reaches it');
  t.equal(r.status, 3, 'exit status through the pty');
  t.equal(r.stderr.length, 0, 'a terminal merges stderr into the pty');
});

t.test('a timeout kills the command; a client that goes away kills it too', async (t) => {
  const { mgmtSock } = await setup(t);
  const slow = await run(mgmtSock, req(['sleep', '30'], { timeoutMs: 300 }));
  t.ok(slow.timedOut, 'timed out');
  t.equal(slow.status, 137, 'killed by SIGKILL');

  // A raw client: START, wait for STARTED, then drop the connection.
  const marker = `1000.${process.pid}${Date.now() % 1000}`;
  const sock = await new Promise<Socket>((resolve, reject) => {
    const r = request({ socketPath: mgmtSock, path: '/Exec', headers: { Connection: 'Upgrade', Upgrade: F.EXEC_UPGRADE } });
    r.on('upgrade', (_res, s) => resolve(s));
    r.on('error', reject);
    r.end();
  });
  const started = new Promise<void>((resolve) => {
    const rd = new F.FrameReader((type) => {
      if (type === F.STARTED) resolve();
    });
    sock.on('data', (d: Buffer) => rd.push(d));
  });
  sock.write(F.frame(F.START, { argv: ['sleep', marker], env: [`PATH=${process.env.PATH}`] }));
  await started;
  t.ok(processesMentioning(`sleep ${marker}`).length > 0, 'the command runs');
  sock.destroy();
  await waitFor(() => processesMentioning(`sleep ${marker}`).length === 0, 20_000);
  t.pass('the command is killed once its client is gone');
});

t.test('a program that does not exist is a typed error naming it', async (t) => {
  const { mgmtSock } = await setup(t);
  const e = await run(mgmtSock, req(['/no/such/program'])).catch((x: unknown) => x);
  t.ok(isKataError(e), 'a KataError');
  if (isKataError(e)) {
    t.equal(e.code, 'E_AGENT');
    t.equal(e.details.agentCode, 'E_EXEC', 'the agent could not start it');
    t.match(e.message, /no\/such\/program/);
  }
  t.notOk(existsSync('/no/such/program'));
});
