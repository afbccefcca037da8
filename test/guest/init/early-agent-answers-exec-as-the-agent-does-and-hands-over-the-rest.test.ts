/**
 * kata-init's early agent (guest/init/early-agent.c), built on its own and served over a unix
 * socket as the virtio-serial port (test/helpers/early-agent.ts): its Check and Exec answers against node's agent's (AgentServer with its
 * spawnRunner, the guest's) for the same request lines, and the handover: every byte it read and
 * did not answer, exactly, once node's agent is ready or a request is not its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { makeIp } from '../../../guest/agent/ip.js';
import { LineSplitter } from '../../../guest/agent/protocol.js';
import { spawnRunner } from '../../../guest/agent/runner.js';
import { AgentServer } from '../../../guest/agent/server.js';
import { buildEarlyAgent, earlyAgentPort, type EarlyAgentPort } from '../../helpers/early-agent.js';

const dir = mkdtempSync(join(tmpdir(), 'krt-early-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let bin = '';

interface Early extends EarlyAgentPort {
  send(raw: string): void;
  /** The next answer line. */
  next(): Promise<Record<string, unknown>>;
  ask(req: unknown): Promise<Record<string, unknown>>;
}

async function early(t: Test, env: Record<string, string> = {}): Promise<Early> {
  const port = await earlyAgentPort(t, bin, dir, { env });
  const client = createConnection(port.socketPath);
  t.teardown(() => client.destroy());
  const answers: Record<string, unknown>[] = [];
  const waiting: ((v: Record<string, unknown>) => void)[] = [];
  const splitter = new LineSplitter((l) => {
    const v = JSON.parse(l) as Record<string, unknown>;
    const w = waiting.shift();
    if (w) w(v);
    else answers.push(v);
  });
  client.on('data', (d: Buffer) => splitter.push(d));
  client.on('error', () => {}); // a reset when the early agent exits with bytes it left unread
  const next = (): Promise<Record<string, unknown>> => {
    const a = answers.shift();
    return a ? Promise.resolve(a) : new Promise((r) => waiting.push(r));
  };
  return {
    ...port,
    send: (raw) => client.write(raw),
    next,
    ask: (req) => {
      client.write(`${JSON.stringify(req)}\n`);
      return next();
    },
  };
}

const agent = new AgentServer({
  network: { ip: makeIp(async () => ({ stdout: '[]', stderr: '', exitCode: 0, timedOut: false, truncated: false })) },
  storage: { run: spawnRunner, sysfs: '/nonexistent', dev: '/nonexistent', mountsFile: '/proc/self/mounts' },
  run: spawnRunner,
  shutdown: () => {},
});
const nodeAnswer = async (req: unknown): Promise<Record<string, unknown>> => JSON.parse(await agent.handleLine(JSON.stringify(req)));

t.before(async () => {
  bin = await buildEarlyAgent(dir);
});

t.test('Check says SERVING, early, and the share kata-init mounted', async (t) => {
  const e = await early(t, { EARLY_AGENT_SHAREFS: 'kataShared:/run/kata-containers/shared/containers/' });
  t.same(await e.ask({ id: 1, method: 'Check', params: {} }), {
    id: 1,
    result: { status: 'SERVING', early: true, sharefs: 'kataShared:/run/kata-containers/shared/containers/' },
  });
  t.same(
    await e.ask({ id: 'c', method: 'Check' }),
    { id: 'c', result: { status: 'SERVING', early: true, sharefs: 'kataShared:/run/kata-containers/shared/containers/' } },
    'a string id, no params',
  );
  const bare = await early(t);
  t.same(
    await bare.ask({ id: 7, method: 'Check', params: {} }),
    { id: 7, result: { status: 'SERVING', early: true } },
    'no share: no sharefs',
  );
});

t.test('Exec answers as node\u2019s agent does: output, status, stdin, env, cwd, signals, timeout, cap, bad UTF-8', async (t) => {
  const e = await early(t);
  const cases: [string, Record<string, unknown>][] = [
    ['status and both streams', { argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'] }],
    ['input on stdin, NUL and non-ASCII kept', { argv: ['cat'], input: 'a\u00e9\u0000b\u{1f600}\n' }],
    ['no input: stdin is /dev/null', { argv: ['sh', '-c', 'cat; echo eof'] }],
    ['env added to the agent\u2019s, overriding', { argv: ['sh', '-c', 'echo "$KRT_A $HOME"'], env: { KRT_A: 'x y', HOME: '/krt-home' } }],
    ['cwd', { argv: ['pwd'], cwd: '/usr' }],
    ['killed by a signal: 128+N', { argv: ['sh', '-c', 'kill -TERM $$'] }],
    ['killed at timeoutMs', { argv: ['sleep', '5'], timeoutMs: 300 }],
    ['output capped at 4 MiB a stream', { argv: ['sh', '-c', 'yes | head -c 5000000'] }],
    ['bytes that are not UTF-8 become U+FFFD', { argv: ['printf', '\\377a\\303\\050b\\355\\240\\200c\\360\\237\\230'] }],
    ['control characters', { argv: ['printf', '\\001\\t\\r\\b\\f"\\\\'] }],
  ];
  for (const [what, params] of cases) {
    const mine = await e.ask({ id: 5, method: 'Exec', params });
    const theirs = await nodeAnswer({ id: 5, method: 'Exec', params });
    t.same(mine, theirs, what);
  }
});

t.test('a program that cannot start: E_EXEC, as node\u2019s agent says', async (t) => {
  const e = await early(t);
  for (const params of [{ argv: ['/nonexistent/krt-prog'] }, { argv: ['true'], cwd: '/nonexistent/krt-dir' }]) {
    const mine = await e.ask({ id: 9, method: 'Exec', params });
    const theirs = await nodeAnswer({ id: 9, method: 'Exec', params });
    t.match(mine, { id: 9, error: { code: 'E_EXEC', message: /^cannot run / } });
    t.equal(
      (mine.error as { code: string }).code,
      (theirs.error as { code: string }).code,
      `same code as node's agent (${JSON.stringify(params)})`,
    );
  }
});

t.test('a call it does not serve is handed over with everything after it, byte for byte', async (t) => {
  const e = await early(t);
  t.match(await e.ask({ id: 1, method: 'Check', params: {} }), { id: 1, result: { early: true } });
  const rest = '{"id":2,"method":"UpdateInterface","params":{"interface":{}}}\n{"id":3,"method":"Check"}\n{"id":4,"me';
  e.send(rest);
  t.equal(await e.handover, rest);
  t.equal(await e.exited, 0, 'and it exits');
});

t.test('what it cannot be sure to answer as node would is handed over, not answered', async (t) => {
  for (const line of [
    '{not json',
    '{"id":1.5,"method":"Check"}',
    '{"id":"\\u0041","method":"Check"}',
    '{"id":1,"method":"Check","params":[1]}',
    '{"id":1,"method":"Exec","params":{"argv":[]}}',
    '{"id":1,"method":"Exec","params":{"argv":["true"],"timeoutMs":-1}}',
    '{"id":1,"method":"Exec","params":{"argv":["true"],"input":7}}',
    '{"id":1,"method":"Exec","params":{"argv":["true"],"env":{"A":1}}}',
    '{"id":1,"method":"Exec","params":{"argv":["a\\u0000b"]}}',
    '{"method":"Check"}',
  ]) {
    const e = await early(t);
    e.send(`${line}\n`);
    t.equal(await e.handover, `${line}\n`, line);
  }
});

t.test('node\u2019s agent ready: the request in hand is answered, the rest handed over', async (t) => {
  const e = await early(t);
  const slow = e.ask({ id: 1, method: 'Exec', params: { argv: ['sh', '-c', 'sleep 0.3; echo done'] } });
  await new Promise((r) => setTimeout(r, 100));
  e.ready();
  e.send('{"id":2,"method":"Check","params":{}}\n{"id":3,');
  t.match(await slow, { id: 1, result: { stdout: 'done\n' } }, 'the Exec in hand finished');
  t.equal(await e.handover, '', 'nothing read after the readiness: the port keeps the rest for node\u2019s agent');
  t.equal(await e.exited, 0);
});

t.test('a request read but not begun when node\u2019s agent is ready goes to it', async (t) => {
  const e = await early(t);
  // one write: both lines are in the early agent's buffer while the first runs
  e.send('{"id":1,"method":"Exec","params":{"argv":["sh","-c","sleep 0.3; echo done"]}}\n{"id":2,"method":"Check","params":{}}\n');
  await new Promise((r) => setTimeout(r, 100));
  e.ready();
  t.match(await e.next(), { id: 1, result: { stdout: 'done\n' } }, 'the Exec in hand finished');
  t.equal(await e.handover, '{"id":2,"method":"Check","params":{}}\n', 'the Check after it was handed over, not answered');
});

t.test('blank lines and CRLF are taken as node\u2019s agent takes them', async (t) => {
  const e = await early(t);
  e.send('\n   \n{"id":4,"method":"Check","params":{}}\r\n{"id":5,"method":"Check"}\n');
  t.same(await e.next(), { id: 4, result: { status: 'SERVING', early: true } }, 'the CRLF line answered');
  t.same(await e.next(), { id: 5, result: { status: 'SERVING', early: true } }, 'then the next, in order');
  e.ready();
  t.equal(await e.handover, '', 'nothing left to hand over');
  t.equal(await e.exited, 0);
});
