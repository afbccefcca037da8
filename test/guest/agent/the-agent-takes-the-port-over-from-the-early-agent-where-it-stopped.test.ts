/**
 * Node's agent started as kata-init starts it beside the early agent (guest/init/kata-init.c): the
 * port as fd 3, the early agent's handover as fd 4, its readiness as fd 5 (KATA_AGENT_FDS=3,4,5),
 * at nice 19. It must say it is ready, serve what was handed over before anything else, even a
 * line cut in two between the handover and the port, and get its priority back. A socket stands
 * for the virtio-serial port; the agent runs in a namespace of its own (it starts an `ip`).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { LineSplitter } from '../../../guest/agent/protocol.js';
import { tempNetns } from '../../helpers/netns.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'guest', 'agent', 'main.js');

t.test('it serves the handed-over bytes first, then the port, at its own priority again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-takeover-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ns = (await tempNetns(t, 'to')).name!;
  const path = join(dir, 'port');
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const host = createConnection(path);
  const port = await accepted;
  server.close();
  const agent = spawn('ip', ['netns', 'exec', ns, 'nice', '-n', '19', process.execPath, MAIN], {
    stdio: ['ignore', 'ignore', 'pipe', port, 'pipe', 'pipe'],
    env: { ...process.env, KATA_AGENT_FDS: '3,4,5' },
  });
  port.destroy();
  // the socket is non-blocking (the guest's port is not): the agent's reads may say EAGAIN and retry
  t.teardown(() => {
    agent.kill('SIGKILL');
    host.destroy();
  });
  let stderr = '';
  agent.stderr!.on('data', (d: Buffer) => (stderr += d));
  const answers: Record<string, unknown>[] = [];
  const splitter = new LineSplitter((l) => answers.push(JSON.parse(l) as Record<string, unknown>));
  host.on('data', (d: Buffer) => splitter.push(d));

  const readyByte = await new Promise<string>((r) =>
    (agent.stdio as unknown as Readable[])[5]!.once('data', (d: Buffer) => r(d.toString())),
  );
  t.equal(readyByte, 'r', 'it tells the early agent it is ready');
  // what the early agent read and did not answer: a whole request and the start of the next
  const handover = (agent.stdio as unknown as Writable[])[4]!;
  handover.end('{"id":1,"method":"Check","params":{}}\n{"id":2,"method":"Ver');
  host.write('sion","params":{}}\n{"id":3,"method":"Check"}\n');
  const deadline = Date.now() + 20_000;
  while (answers.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.same(
    answers.map((a) => a.id),
    [1, 2, 3],
    `every request answered once, in order (agent stderr: ${stderr.trim()})`,
  );
  t.same(answers[0], { id: 1, result: { status: 'SERVING' } }, 'by node\u2019s agent, not the early one');
  t.match(answers[1], { id: 2, result: { agent_version: /\d/ } }, 'the line cut between the handover and the port');
  t.match(stderr, /kata-agent: ready on fd:3 \(uptime [\d.]+ s, agent [\d.]+ s\), taken over from the early agent/);
  // `ip netns exec` and `nice` each exec the next: the pid is node's; field 19 of stat is the nice value
  const nice = Number(readFileSync(`/proc/${agent.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
  t.equal(nice, 0, 'nice 0 again once it has the port (it was started at 19)');
});
