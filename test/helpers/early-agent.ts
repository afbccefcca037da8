/**
 * kata-init's early agent (guest/init/early-agent.c) on the host: built on its own
 * (EARLY_AGENT_STANDALONE: the port is fd 0, node's readiness fd 3, the handover fd 4) and served
 * on a unix socket as QEMU serves the agent's virtio-serial port: the first connection becomes its
 * port, as the guest's port is its once the host connects.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Test } from 'tap';
import { EARLY_AGENT_SOURCES } from '../../runtime-core/guest-kit/init.js';
import { buildStaticC } from '../../runtime-core/guest-kit/static-c.js';

/** Builds it into `dir`; its path. */
export async function buildEarlyAgent(dir: string): Promise<string> {
  const bin = join(dir, 'early-agent');
  await buildStaticC('the early agent', EARLY_AGENT_SOURCES, bin, ['-DEARLY_AGENT_STANDALONE']);
  return bin;
}

export interface EarlyAgentPort {
  /** Connect here (a client, or AgentClient's socketPath). */
  socketPath: string;
  /** Node's agent says it is ready. */
  ready(): void;
  /** What the early agent handed over, once it has ended. */
  handover: Promise<string>;
  /** Its exit status. */
  exited: Promise<number | null>;
}

/** The early agent serving the first connection to a socket in `dir` (in `netns` when given), killed at teardown. */
export async function earlyAgentPort(
  t: Test,
  bin: string,
  dir: string,
  opts: { netns?: string; env?: Record<string, string> } = {},
): Promise<EarlyAgentPort> {
  const socketPath = join(dir, `port-${Math.random().toString(36).slice(2)}`);
  const server = createServer();
  await new Promise<void>((r) => server.listen(socketPath, r));
  let done!: (v: { handover: string; code: number | null }) => void;
  const ended = new Promise<{ handover: string; code: number | null }>((r) => (done = r));
  let readyFd: Writable | undefined;
  let wantReady = false;
  server.once('connection', (port: Socket) => {
    server.close();
    const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, bin] : [bin];
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: [port, 'ignore', 'inherit', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    port.destroy(); // the child has its own copy
    t.teardown(() => {
      child.kill('SIGKILL');
    });
    readyFd = child.stdio[3] as Writable;
    readyFd.on('error', () => {}); // the readiness byte is never read: a reset when it exits
    if (wantReady) readyFd.write('r');
    const handed: Buffer[] = [];
    const out = child.stdio[4] as Readable;
    out.on('data', (d: Buffer) => handed.push(d));
    let code: number | null | undefined;
    let drained = false;
    const finish = (): void => {
      if (code !== undefined && drained) done({ handover: Buffer.concat(handed).toString(), code });
    };
    out.once('end', () => {
      drained = true;
      finish();
    });
    child.once('exit', (c) => {
      code = c;
      finish();
    });
  });
  t.teardown(() => server.close());
  return {
    socketPath,
    ready: () => {
      wantReady = true;
      readyFd?.write('r');
    },
    handover: ended.then((e) => e.handover),
    exited: ended.then((e) => e.code),
  };
}
