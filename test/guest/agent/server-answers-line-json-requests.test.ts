import t from 'tap';
import { makeIp } from '../../../guest/agent/ip.js';
import { LineSplitter } from '../../../guest/agent/protocol.js';
import { spawnRunner, type CommandRunner } from '../../../guest/agent/runner.js';
import { AgentServer } from '../../../guest/agent/server.js';

const ok = (stdout = ''): Awaited<ReturnType<CommandRunner>> => ({ stdout, stderr: '', exitCode: 0, timedOut: false, truncated: false });

function server(opts: { ipRunner?: CommandRunner; shutdown?: () => void } = {}): AgentServer {
  const ipRunner = opts.ipRunner ?? (async () => ok('[]'));
  return new AgentServer({
    network: { ip: makeIp(ipRunner) },
    storage: { run: spawnRunner, sysfs: '/nonexistent', dev: '/nonexistent', mountsFile: '/proc/self/mounts' },
    run: spawnRunner,
    shutdown: opts.shutdown ?? (() => {}),
  });
}

async function ask(s: AgentServer, req: unknown): Promise<Record<string, unknown>> {
  return JSON.parse(await s.handleLine(typeof req === 'string' ? req : JSON.stringify(req)));
}

t.test('Check, Version and unknown methods', async (t) => {
  const s = server();
  t.same(await ask(s, { id: 1, method: 'Check', params: {} }), { id: 1, result: { status: 'SERVING' } });
  const v = await ask(s, { id: 'v', method: 'Version' });
  t.equal(v.id, 'v', 'string ids are echoed');
  t.match(v.result, { grpc_version: /line-json/, agent_version: /\d/ });
  const u = await ask(s, { id: 2, method: 'PauseContainer', params: {} });
  t.match(u, { id: 2, error: { code: 'E_UNIMPLEMENTED', message: /PauseContainer/ } });
});

t.test('malformed lines get E_PARSE with a null id; bad params E_INVALID_ARGUMENT', async (t) => {
  const s = server();
  t.match(await ask(s, '{not json'), { id: null, error: { code: 'E_PARSE' } });
  t.match(await ask(s, { method: 'Check' }), { id: null, error: { code: 'E_PARSE' } }, 'no id');
  t.match(await ask(s, { id: 3, method: 'UpdateInterface', params: {} }), {
    id: 3,
    error: { code: 'E_INVALID_ARGUMENT', message: /interface/ },
  });
  t.match(await ask(s, { id: 4, method: 'Exec', params: { argv: [] } }), { id: 4, error: { code: 'E_INVALID_ARGUMENT', message: /argv/ } });
  t.match(
    await ask(s, {
      id: 5,
      method: 'AddStorages',
      params: { storages: [{ driver: 'bogus', mount_point: '/x', source: '', fstype: '', options: [], driver_options: [] }] },
    }),
    { id: 5, error: { code: 'E_INVALID_ARGUMENT', message: /bogus/ } },
  );
  t.match(
    await ask(s, { id: 6, method: 'Check', params: [1] }),
    { id: 6, error: { code: 'E_INVALID_ARGUMENT' } },
    'params must be an object',
  );
});

t.test('Exec returns exit code and output, kills at the timeout, reports a missing program', async (t) => {
  const s = server();
  const r = await ask(s, { id: 1, method: 'Exec', params: { argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'] } });
  t.same(r.result, { exitCode: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false, truncated: false });
  const cat = await ask(s, { id: 2, method: 'Exec', params: { argv: ['cat'], input: 'hello' } });
  t.match(cat.result, { exitCode: 0, stdout: 'hello' }, 'input goes to stdin');
  const started = Date.now();
  const slow = await ask(s, { id: 3, method: 'Exec', params: { argv: ['sleep', '10'], timeoutMs: 200 } });
  t.match(slow.result, { timedOut: true, exitCode: 137 }, 'SIGKILL at the timeout: 128+9');
  t.ok(Date.now() - started < 5000, 'did not wait for the command');
  t.match(await ask(s, { id: 4, method: 'Exec', params: { argv: ['/nonexistent/prog'] } }), {
    error: { code: 'E_EXEC', message: /nonexistent/ },
  });
});

t.test('state-changing calls run one at a time; Check is not held behind them', async (t) => {
  const events: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const ipRunner: CommandRunner = async (_f, args, opts) => {
    if (args.includes('-batch')) {
      const first = (opts?.input ?? '').split('\n')[0]!;
      events.push(`start ${first}`);
      if (first.includes('10.1.0.0')) await gate;
      events.push(`end ${first}`);
      return ok();
    }
    return ok('[]');
  };
  const s = server({ ipRunner });
  const route = (dest: string): unknown => ({ dest, gateway: '', device: 'eth0', source: '', scope: 0, family: 0, flags: 0, mtu: 0 });
  const a = ask(s, { id: 1, method: 'UpdateRoutes', params: { routes: { Routes: [route('10.1.0.0/16')] } } });
  const b = ask(s, { id: 2, method: 'UpdateRoutes', params: { routes: { Routes: [route('10.2.0.0/16')] } } });
  await new Promise((r) => setTimeout(r, 50));
  t.same(await ask(s, { id: 3, method: 'Check' }), { id: 3, result: { status: 'SERVING' } }, 'Check answered while a route call waits');
  t.same(events, ['start route replace 10.1.0.0/16 dev eth0 proto boot'], 'the second call has not started');
  release();
  await Promise.all([a, b]);
  t.same(
    events.map((e) => e.split(' ')[0]),
    ['start', 'end', 'start', 'end'],
    'strictly one after the other',
  );
});

t.test('Shutdown is answered before the shutdown action runs; then Check says NOT_SERVING', async (t) => {
  let called = false;
  const s = server({
    shutdown: () => {
      called = true;
    },
  });
  const r = await ask(s, { id: 1, method: 'Shutdown' });
  t.same(r, { id: 1, result: {} });
  t.equal(called, false, 'not yet: the answer goes out first');
  await new Promise((res) => setTimeout(res, 150));
  t.equal(called, true);
  t.same((await ask(s, { id: 2, method: 'Check' })).result, { status: 'NOT_SERVING' });
});

t.test('LineSplitter joins chunks, skips blank lines, drops over-long lines', async (t) => {
  const lines: string[] = [];
  let overflows = 0;
  const sp = new LineSplitter(
    (l) => lines.push(l),
    () => overflows++,
    16,
  );
  sp.push(Buffer.from('{"a":'));
  sp.push(Buffer.from('1}\n\n{"b":2}\r\n{"c"'));
  t.same(lines, ['{"a":1}', '{"b":2}']);
  sp.push(Buffer.from(`:3}\n${'x'.repeat(40)}\nafter\n`));
  t.same(lines, ['{"a":1}', '{"b":2}', '{"c":3}', 'after'], 'the long line is dropped up to its newline');
  t.equal(overflows, 1);
  // A multi-byte character split across chunks survives.
  const euro = Buffer.from('"€"\n');
  sp.push(euro.subarray(0, 2));
  sp.push(euro.subarray(2));
  t.equal(lines.at(-1), '"€"');
});
