/**
 * Root-environment processes (ExecProcess with container_id "") end to end on the host: the real
 * AgentServer on a unix socket, kata-monitor built from its source with gcc, the real host client
 * and its stream pumps. No runc and no VM: the container calls need the guest (see
 * test/guest/agent/containers-*.test.ts).
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { spawnRunner } from '../../../guest/agent/runner.js';
import { AgentServer } from '../../../guest/agent/server.js';
import { serveStream } from '../../../guest/agent/transport.js';
import { silentLogger } from '../../../host/log.js';
import { AgentClient, type OciProcess } from '../../../runtime-core/agent/client.js';
import { ProcessIo, pumpOutput, pumpStdin } from '../../../runtime-core/agent/process-io.js';
import { buildMonitor } from '../../../runtime-core/guest-kit/monitor.js';

class Collect extends Writable {
  chunks: Buffer[] = [];
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.chunks.push(c);
    cb();
  }
  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

const proc = (args: string[], extra: Partial<OciProcess> = {}): OciProcess => ({
  args,
  cwd: '/',
  env: [`PATH=${process.env.PATH}`],
  ...extra,
});

async function setup(t: { teardown(fn: () => unknown): void }, opts: { highWater?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'krt-procio-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const monitor = join(dir, 'kata-monitor');
  await buildMonitor(monitor);
  const ioRoot = join(dir, 'io');
  const server = new AgentServer({
    network: { ip: undefined as never },
    storage: { run: spawnRunner, sysfs: '/nonexistent', dev: '/nonexistent', mountsFile: '/proc/self/mounts' },
    run: spawnRunner,
    containers: {
      monitor,
      ioRoot,
      bundleRoot: join(dir, 'bundles'),
      runcRoot: join(dir, 'runc'),
      highWater: opts.highWater,
      drainIdleMs: 300,
    },
    shutdown: () => {},
  });
  const path = join(dir, 'agent.sock');
  const conns = new Set<Socket>();
  const srv = createServer((s) => {
    conns.add(s);
    serveStream(server, s);
  });
  await new Promise<void>((r) => srv.listen(path, r));
  const client = new AgentClient({ socketPath: path, log: silentLogger() });
  t.teardown(() => {
    client.close();
    srv.close();
  });
  /** What a dying VM does to the host: the agent connection closes. */
  const cut = (): void => {
    for (const s of conns) s.destroy();
  };
  return { client, ioRoot, cut };
}

async function runIt(c: AgentClient, eid: string, p: OciProcess, input?: Buffer) {
  await c.execProcess('', eid, p);
  const out = new Collect();
  const err = new Collect();
  const stdin = input ? new PassThrough() : undefined;
  const io = new ProcessIo(c, '', eid, { stdout: out, stderr: err, stdin });
  stdin?.end(input);
  const status = await c.waitProcess('', eid, { timeoutMs: 60_000 });
  await io.output;
  return { status, stdout: out.data, stderr: err.data };
}

t.test('binary output and stdin round-trip byte-exact; statuses are exact', async (t) => {
  const { client: c, ioRoot } = await setup(t);
  const bin = await runIt(c, 'b', proc(['printf', '\\377\\376\\200\\000\\n']));
  t.same([...bin.stdout], [0xff, 0xfe, 0x80, 0, 0x0a], 'no UTF-8 decoding');
  const input = randomBytes(3 * 1024 * 1024 + 17);
  const cat = await runIt(c, 'cat', proc(['sh', '-c', 'cat; echo err >&2; exit 9']), input);
  t.ok(cat.stdout.equals(input), 'stdin forwarded in order, all of it, then closed');
  t.same([cat.status, cat.stderr.toString()], [9, 'err\n'], 'stderr separate; exit status');
  t.equal(await c.waitProcess('', 'cat'), 9, 'a second Wait answers the cached status');
  const sig = await runIt(c, 'sig', proc(['sh', '-c', 'kill -KILL $$']));
  t.equal(sig.status, 137, '128 + SIGKILL');
  const dev = await runIt(c, 'dev', proc(['sh', '-c', 'echo via-dev-stdout > /dev/stdout']));
  t.equal(dev.stdout.toString(), 'via-dev-stdout\n', 'stdout is a real pipe: /dev/stdout can be opened');
  t.same(await readdir(ioRoot), [], 'no FIFO directory is left');
});

t.test('64 MiB of output arrive intact through a bounded buffer', async (t) => {
  const { client: c } = await setup(t, { highWater: 1024 * 1024 });
  await c.execProcess('', 'big', proc(['sh', '-c', 'head -c 67108864 /dev/zero | tr "\\0" "\\377"']));
  const h = createHash('sha256');
  let n = 0;
  const sink = new Writable({
    highWaterMark: 256 * 1024,
    write(ch: Buffer, _e, cb) {
      h.update(ch);
      n += ch.length;
      setTimeout(cb, n % (8 * 1024 * 1024) < ch.length ? 200 : 0); // a slow reader now and then
    },
  });
  const started = Date.now();
  const bytes = await pumpOutput(c, '', 'big', 'stdout', sink);
  t.equal(await c.waitProcess('', 'big'), 0);
  t.equal(bytes, 64 * 1024 * 1024);
  t.equal(
    h.digest('hex'),
    createHash('sha256')
      .update(Buffer.alloc(64 * 1024 * 1024, 0xff))
      .digest('hex'),
    'sha256 matches',
  );
  t.comment(`host, unix socket: ${(64 / ((Date.now() - started) / 1000)).toFixed(0)} MiB/s`);
});

t.test('pumpStdin forwards a stream in chunks and closes stdin at its end', async (t) => {
  const { client: c } = await setup(t);
  await c.execProcess('', 'wc', proc(['wc', '-c']));
  const src = new PassThrough();
  const sent = pumpStdin(c, '', 'wc', src, { chunk: 1000 });
  src.end(randomBytes(123_457));
  t.equal(await sent, 123_457);
  const out = new Collect();
  await pumpOutput(c, '', 'wc', 'stdout', out);
  t.equal(out.data.toString().trim(), '123457', 'every byte arrived, then EOF');
});

t.test('an exit is reported although a grandchild keeps stdout open; the stream then ends', async (t) => {
  const { client: c } = await setup(t);
  const r = await runIt(c, 'bg', proc(['sh', '-c', 'sleep 60 & echo started; exit 4']));
  t.same([r.status, r.stdout.toString()], [4, 'started\n'], 'Wait answered, output complete, EOF reached');
});

t.test('a blocked Read never holds up Signal, Wait or another process', async (t) => {
  const { client: c } = await setup(t);
  await c.execProcess('', 'quiet', proc(['sleep', '60']));
  const read = c.readStdout('', 'quiet', 1024);
  const other = await runIt(c, 'other', proc(['echo', 'meanwhile']));
  t.equal(other.stdout.toString(), 'meanwhile\n', 'another process ran while a Read was blocked');
  await c.signalProcess('', 'quiet', 9);
  t.equal(await c.waitProcess('', 'quiet', { timeoutMs: 30_000 }), 137);
  t.equal((await read).length, 0, 'the blocked Read ends with EOF');
});

t.test('a terminal process gets a pty with its size; TtyWinResize changes it', async (t) => {
  const { client: c } = await setup(t);
  await c.execProcess(
    '',
    'tty',
    proc(['sh', '-c', 'stty size; read x; stty size'], { terminal: true, consoleSize: { height: 30, width: 90 } }),
  );
  const out = new Collect();
  const stdin = new PassThrough();
  const io = new ProcessIo(c, '', 'tty', { stdout: out, stdin });
  for (let i = 0; i < 100 && !out.data.includes('30 90'); i++) await new Promise((r) => setTimeout(r, 50));
  await c.ttyWinResize('', 'tty', 50, 160);
  await new Promise((r) => setTimeout(r, 200));
  stdin.end('\n');
  t.equal(await c.waitProcess('', 'tty', { timeoutMs: 30_000 }), 0);
  await io.output;
  t.match(out.data.toString(), /30 90\r\n[\s\S]*50 160\r\n/, 'initial size, then the new one');
  t.equal((await c.readStderr('', 'tty', 10)).length, 0, 'no separate stderr for a terminal');
});

t.test('bad calls: unknown ids, duplicate exec_id, missing program, closed stdin', async (t) => {
  const { client: c } = await setup(t);
  const code = (p: Promise<unknown>): Promise<string> =>
    p.then(
      () => '',
      (e: { details?: { agentCode?: string } }) => e.details?.agentCode ?? String(e),
    );
  t.equal(await code(c.waitProcess('', 'nope')), 'E_NOT_FOUND');
  t.equal(await code(c.readStdout('no-such-container', '', 10)), 'E_NOT_FOUND');
  t.equal(await code(c.execProcess('', 'x', proc(['/nonexistent/program']))), 'E_EXEC');
  await c.execProcess('', 'd', proc(['cat']));
  t.equal(await code(c.execProcess('', 'd', proc(['cat']))), 'E_ALREADY_EXISTS');
  await c.closeStdin('', 'd');
  t.equal(await code(c.writeStdin('', 'd', Buffer.from('late'))), 'E_FAILED_PRECONDITION', 'write after CloseStdin');
  t.equal(await c.waitProcess('', 'd'), 0);
  t.equal(await code(c.ttyWinResize('', 'd', 10, 10)), 'E_FAILED_PRECONDITION', 'no terminal');
  await c.execProcess('', 'z', proc(['cat']));
  t.equal(await c.writeStdin('', 'z', Buffer.alloc(0)), 0, 'a zero-length write closes stdin (Kata)');
  t.equal(await c.waitProcess('', 'z', { timeoutMs: 30_000 }), 0, 'so cat ends');
  t.equal(await code(c.execProcess('', 'e', { args: [], cwd: '/' })), 'E_INVALID_ARGUMENT');
  const ac = new AbortController();
  await c.execProcess('', 'slow', proc(['sleep', '30']));
  const aborted = c.readStdout('', 'slow', 10, { signal: ac.signal }).catch((e: unknown) => e);
  ac.abort('test');
  t.match(await aborted, { code: 'E_AGENT', details: { aborted: true } }, 'an aborted call rejects at once');
  await c.signalProcess('', 'slow', 9);
});

t.test('when the connection dies, every pending call and pump rejects', async (t) => {
  const { client: c, cut } = await setup(t);
  await c.execProcess('', 'long', proc(['sleep', '30']));
  const io = new ProcessIo(c, '', 'long', { stdout: new Collect(), stderr: new Collect() }, { leaveStdinOpen: true });
  const wait = c.waitProcess('', 'long').catch((e: unknown) => e);
  const read = c.readStdout('', 'long', 10).catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 100));
  cut();
  t.match(await wait, { code: 'E_AGENT' }, 'Wait rejects');
  t.match(await read, { code: 'E_AGENT' }, 'Read rejects');
  t.match(await io.output.catch((e: unknown) => e), { code: 'E_AGENT' }, 'the pumps reject');
  const again = new AgentClient({ socketPath: c.socketPath, log: silentLogger() });
  t.teardown(() => again.close());
  await again.signalProcess('', 'long', 9);
  t.equal(await again.waitProcess('', 'long'), 137, 'the agent kept the process; a new connection can kill it');
});
