/**
 * The long-lived shim process of one pod: serves containerd.task.v2.Task over ttRPC on the group's
 * socket, owns the pod's sandbox (the runtime core's Sandbox, in this process: the shim is the
 * sandbox's supervisor, so `kata-resources sandbox status|down` work on it too) and publishes task
 * events to containerd. Logs go to the bundle's `log` FIFO, which containerd copies into its own log.
 */
import { closeSync, constants as fsc, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { readProcStat } from '../host/proc.js';
import { loadConfig } from '../runtime-core/config/load-config.js';
import type { SandboxConfig } from '../runtime-core/config/types.js';
import { networkOptions } from '../runtime-core/sandbox/assemble.js';
import { resolveGuestImage } from '../runtime-core/sandbox/guest-image.js';
import { Sandbox } from '../runtime-core/sandbox/sandbox.js';
import { sandboxService } from '../runtime-core/sandbox/service.js';
import { StateStore } from '../runtime-core/state/store.js';
import { MGMT_SOCKET } from '../runtime-core/supervisor/mgmt-protocol.js';
import { serveManagement } from '../runtime-core/supervisor/server.js';
import { TtrpcServer } from '../ttrpc/server.js';
import { EventPublisher } from './events/publisher.js';
import { shimEvents } from './events/shim-events.js';
import { releasePendingOpens } from './fifo-io.js';
import type { ShimFlags } from './flags.js';
import { Task } from './generated/containerd/runtime/v2/task/shim_pb.js';
import { Pod } from './pod.js';
import { taskService } from './task-service.js';

/** pino into containerd's log FIFO (it holds it open for reading); stderr when there is none. */
function shimLogger(bundle: string, f: ShimFlags): { log: Logger; flushSync(): void } {
  let fd = 2;
  try {
    fd = openSync(join(bundle, 'log'), fsc.O_WRONLY | fsc.O_NONBLOCK);
  } catch {
    fd = 2;
  }
  const dest = pino.destination({ fd, sync: false });
  dest.on('error', () => {});
  const log = pino(
    {
      level: process.env.KATA_LOG_LEVEL ?? (f.debug ? 'debug' : 'info'),
      base: { pid: process.pid, runtime: 'io.containerd.kata-resources.v2', id: f.id },
    },
    dest,
  );
  const flushSync = (): void => {
    try {
      dest.flushSync();
    } catch {
      /* a full or closed FIFO: the line is lost, the exit is not held up */
    }
  };
  return { log, flushSync };
}

/** Tell `start` (through the pipe it gave as fd 3) that the socket listens, or why not. */
function report(line: string): void {
  try {
    writeSync(3, `${line}\n`);
    closeSync(3);
  } catch {
    /* started by hand, without the pipe */
  }
}

export async function runDaemon(f: ShimFlags): Promise<void> {
  const bundle = process.cwd();
  const { log, flushSync } = shimLogger(bundle, f);
  const publisher = new EventPublisher({ address: process.env.TTRPC_ADDRESS ?? `${f.address}.ttrpc`, namespace: f.namespace, logger: log });
  const events = shimEvents(publisher);
  let server: TtrpcServer | undefined;
  const exit = async (code: number): Promise<void> => {
    await server?.close({ timeoutMs: 2000 }).catch(() => {});
    await events.close().catch(() => {});
    releasePendingOpens();
    process.exit(code);
  };
  // A bug must not go unseen (stderr is /dev/null) nor hang the exit: log it, then end; containerd
  // then runs `delete`, which takes the sandbox down from its state.
  const crash = (kind: string) => (e: unknown) => {
    log.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, `shim ${kind}: exiting`);
    flushSync();
    releasePendingOpens();
    process.exit(70);
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled promise rejection'));
  const pod: Pod = new Pod({
    log,
    events,
    loadConfig: (path) => loadConfig(path, { log }),
    bootSandbox: (id, netns, config) => bootSandbox(id, netns, config, log, pod),
  });
  server = new TtrpcServer({ logger: log }).register(Task, taskService(pod, { shimPid: process.pid, onShutdown: () => void exit(0) }));
  try {
    await server.listen({ path: f.socket! });
  } catch (e) {
    report(`error ${(e as Error).message}`);
    releasePendingOpens();
    process.exit(1);
  }
  report('ready');
  log.info({ socket: f.socket, namespace: f.namespace }, 'shim serving');
  const stop = (): void => {
    void pod.dropSandbox().finally(() => void exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function bootSandbox(id: string, netns: string | undefined, config: SandboxConfig, log: Logger, pod: Pod): Promise<Sandbox> {
  const store = new StateStore(config.runtime.stateDir, log);
  const sb = await Sandbox.up({ id, ...(netns ? { netns } : {}), config, store, log, guest: () => resolveGuestImage(config) });
  await sb.recordProcess('supervisor', {
    name: 'containerd-shim-kata-resources-v2',
    pid: process.pid,
    startTime: readProcStat(process.pid)?.startTime ?? 0,
    file: process.execPath,
  });
  sb.on('failed', (e) => pod.sandboxFailed(e));
  // The CLI's view of it (`kata-resources sandbox status|down ID`), as for a sandbox it started.
  await serveManagement(
    join(store.sandboxDir(id), MGMT_SOCKET),
    sandboxService(
      sb,
      () => networkOptions(config),
      () => {},
    ),
    log,
  );
  return sb;
}
