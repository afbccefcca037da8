/**
 * kata-agent (this project's): the process the guest's init starts. It finds the virtio-serial
 * port named agent.0 and answers line-delimited JSON requests on it (protocol.ts).
 *
 *   node agent.cjs                     in the guest: the port kata-init opened (KATA_AGENT_FDS), else by
 *                                      name, from /sys/class/virtio-ports
 *   node agent.cjs --device PATH       a given character device
 *   node agent.cjs --socket PATH       listen on a unix socket instead (host tests; debugging)
 *   node start.cjs [...]               the same, compiled with the kit's code cache (start.ts)
 *
 * Powering off on Shutdown only happens when KATA_AGENT_GUEST=1 (set by the guest's init), so a
 * copy started on a host by mistake just exits.
 */
import { unlinkSync, writeSync } from 'node:fs';
import { setPriority, uptime } from 'node:os';
import { dirname, join } from 'node:path';
import { makeCoprocessIp } from './ip-coprocess.js';
import { sleep } from './pci-path.js';
import { AGENT_PORT_NAME } from './protocol.js';
import { spawnRunner } from './runner.js';
import { net } from './builtins.js';
import { AgentServer } from './server.js';
import { findVirtioPort, servePort, serveStream, type PortFd } from './transport.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const debug = process.env.KATA_AGENT_LOG === 'debug';
// fd 2 directly: process.stderr on the guest's console is a tty.WriteStream, and making it loads
// net and the stream machinery (20 modules) before the first request is answered.
const log = (m: string): void => {
  const line = `kata-agent: ${m}\n`;
  try {
    writeSync(2, line);
  } catch {
    process.stderr.write(line); // EAGAIN on a non-blocking pipe: let node queue it
  }
};
const inGuest = process.env.KATA_AGENT_GUEST === '1';

async function powerOff(): Promise<void> {
  if (!inGuest) {
    log('Shutdown: not in a guest (KATA_AGENT_GUEST unset), exiting');
    process.exit(0);
  }
  log('Shutdown: syncing and powering off');
  await spawnRunner('sync', [], { timeoutMs: 10_000 });
  await spawnRunner('poweroff', ['-f'], { timeoutMs: 10_000 });
}

async function main(): Promise<void> {
  // One long-lived `ip` for every network call (ip-coprocess.ts): a spawned `ip` costs 100-250 ms
  // under TCG, a request to a running one ~20 ms. Started once the port is served (so that the spawn
  // does not delay readiness), while the host is still connecting and checking. That start is the
  // agent's first use of child_process (in the guest under TCG: loading it ~90 ms, the first spawn
  // ~200 ms, later ones ~55 ms). Deferring it until the host's first Check is answered measured
  // later, not earlier, interfaces (the guest has one vCPU: the work only moves).
  const ip = makeCoprocessIp({ runner: spawnRunner });
  const server = new AgentServer({
    network: { ip, sysfs: '/sys' },
    storage: { run: spawnRunner, sysfs: '/sys', dev: '/dev', mountsFile: '/proc/self/mounts' },
    run: spawnRunner,
    // Beside the agent bundle (/opt/kata-agent in the guest); KATA_MONITOR for a copy run elsewhere.
    containers: { monitor: process.env.KATA_MONITOR ?? join(dirname(process.argv[1] ?? '/opt/kata-agent/agent.cjs'), 'kata-monitor') },
    shutdown: powerOff,
    log: debug
      ? log
      : (m) => {
          if (/ failed: /.test(m)) log(m);
        },
  });

  const socketPath = arg('--socket');
  if (socketPath) {
    try {
      unlinkSync(socketPath);
    } catch {
      /* absent */
    }
    const srv = net().createServer((s) => serveStream(server, s));
    srv.listen(socketPath, () => log(`listening on ${socketPath}`));
    const stop = (): void => {
      srv.close();
      try {
        unlinkSync(socketPath);
      } catch {
        /* gone */
      }
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    return;
  }

  const port = portFromInit() ?? (await findPort());
  const served = await servePort(server, port, log);
  const where = typeof port === 'string' ? port : `fd:${port.fd}`;
  const after = typeof port !== 'string' && port.earlyAgent ? ', taken over from the early agent' : '';
  log(`ready on ${where} (uptime ${uptime().toFixed(2)} s, agent ${process.uptime().toFixed(2)} s)${after}`);
  (globalThis as { kataAgentServing?: () => void }).kataAgentServing?.(); // start.ts: the kit build's code cache
  ip.start(); // and replaced at once whenever it ends (a failed line ends it)
  await served.done;
}

/**
 * The port kata-init opened (KATA_AGENT_FDS=PORT[,HANDOVER,READY], guest/init/kata-init.c). With
 * the early agent's pipes, kata-init started this agent at nice 19, so that its start left the
 * guest's one vCPU to the early agent's answers: taking the port over, it gets its priority back
 * (its children, ip and runc, inherit it).
 */
function portFromInit(): PortFd | undefined {
  const fds = (process.env.KATA_AGENT_FDS ?? '').split(',').filter(Boolean).map(Number);
  if (fds.length === 0 || !fds.every((n) => Number.isInteger(n) && n >= 0)) return undefined;
  if (fds.length !== 3) return { fd: fds[0]! };
  try {
    setPriority(0);
  } catch (e) {
    log(`cannot raise the agent's priority: ${(e as Error).message}`);
  }
  return { fd: fds[0]!, earlyAgent: { handover: fds[1]!, ready: fds[2]! } };
}

async function findPort(): Promise<string> {
  let device = arg('--device');
  if (!device) {
    const name = arg('--port-name') ?? AGENT_PORT_NAME;
    const deadline = Date.now() + 30_000;
    while (!(device = await findVirtioPort(name))) {
      if (Date.now() > deadline)
        throw new Error(
          `no virtio-serial port named ${name} in /sys/class/virtio-ports (is virtio_console loaded and the virtserialport configured?)`,
        );
      await sleep(20);
    }
  }
  return device;
}

main().catch((e) => {
  log(`fatal: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
