import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { KataError } from '../../host/errors.js';
import { mark, marks, processStart, relativeTo } from '../../host/marks.js';
import { openByAnotherProcess } from '../../host/proc.js';
import type { Logger } from '../../host/log.js';
import { validateId } from '../../host/names.js';
import { configError, loadConfig } from '../config/load-config.js';
import { preflight } from '../sandbox/preflight.js';
import { StateStore } from '../state/store.js';
import { removeSandbox, supervisorAlive } from '../sandbox/remove.js';
import { sandboxView, type SandboxView } from '../sandbox/view.js';
import { mgmtCall } from '../supervisor/mgmt-client.js';
import { MGMT_SOCKET, type MgmtParams } from '../supervisor/mgmt-protocol.js';
import type { ExecRequest } from '../exec/session.js';
import { execStream, type ExecIo } from './exec-client.js';
import { Readable, Writable } from 'node:stream';
import type { Interface, Route } from '../../host/agent-types.js';
import type { VolumeResources } from '../../plugins/block/volume-plugin.js';

const here = dirname(fileURLToPath(import.meta.url));
const SUPERVISOR_START = join(here, '..', 'supervisor', 'start.js');

function newSandboxId(): string {
  return `sb-${randomBytes(4).toString('hex')}`;
}

export interface UpResult {
  sandbox: SandboxView;
  log: string;
  /** Named points of the CLI and the supervisor, ms after this process started (--json prints them). */
  timeline: Record<string, number>;
}

/** Milliseconds between heartbeat lines of `up`: 10 s, or KATA_RESOURCES_HEARTBEAT_MS. */
function heartbeatMs(env: NodeJS.ProcessEnv): number {
  const v = Number(env.KATA_RESOURCES_HEARTBEAT_MS);
  return Number.isSafeInteger(v) && v > 0 ? v : 10_000;
}

/**
 * Start the supervisor of a new sandbox and wait until it reports the sandbox running (or failed,
 * after its own rollback). Progress lines go to `progress`.
 */
export async function sandboxUp(
  opts: { id?: string; netns?: string; config?: string; progress?: (m: string) => void; env?: NodeJS.ProcessEnv },
  log: Logger,
): Promise<UpResult> {
  mark('cli.up');
  const cfg = loadConfig(opts.config, { log });
  mark('cli.config');
  // What the sandbox would refuse about its configuration, before anything is made (check --config says the same).
  const pf = await preflight(cfg);
  for (const n of pf.notes) opts.progress?.(n);
  if (pf.problems.length > 0) throw configError(cfg.source ?? '(built-in defaults)', pf.problems);
  mark('cli.preflight');
  const id = validateId(opts.id ?? newSandboxId());
  const store = new StateStore(cfg.runtime.stateDir, log);
  if (await store.tryLoad(id))
    throw new KataError(
      'E_SANDBOX_EXISTS',
      `sandbox ${id} already exists; take it down first (kata-resources sandbox down ${id}) or choose another id`,
    );
  const lp = store.logPath(id);
  mkdirSync(dirname(lp), { recursive: true, mode: 0o700 });
  const logFd = openSync(lp, 'a', 0o600);
  const args = [
    SUPERVISOR_START,
    '--id',
    id,
    ...(opts.netns ? ['--netns', opts.netns] : []),
    ...(cfg.source ? ['--config', cfg.source] : []),
  ];
  mark('cli.spawn');
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', 'ignore', logFd, 'pipe'],
    env: { ...(opts.env ?? process.env), KATA_LOG_LEVEL: process.env.KATA_LOG_LEVEL ?? (cfg.runtime.enableDebug ? 'debug' : 'info') },
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let final: { ok: boolean; sandbox?: SandboxView; error?: { code: string; message: string }; marks?: Record<string, number> } | undefined;
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  // A heartbeat while a step takes long (a boot under TCG): the step and the time since `up` began.
  const started = Date.now();
  let step = 'starting the supervisor';
  const beat = setInterval(
    () => opts.progress?.(`${step} (still waiting, ${Math.round((Date.now() - started) / 1000)} s)`),
    heartbeatMs(opts.env ?? process.env),
  );
  try {
    for await (const line of createInterface({ input: pipe })) {
      let msg: { progress?: string; ok?: boolean; sandbox?: SandboxView; error?: { code: string; message: string } };
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg.progress) {
        step = msg.progress;
        opts.progress?.(msg.progress);
      }
      if (msg.ok !== undefined) {
        mark('cli.result');
        final = msg as typeof final;
        break;
      }
    }
  } finally {
    clearInterval(beat);
  }
  (pipe as unknown as { destroy?: () => void }).destroy?.();
  if (!final) {
    const code = await exited;
    throw new KataError('E_DAEMON_START', `the supervisor of sandbox ${id} exited (${code}) before reporting; see ${lp}`);
  }
  if (!final.ok || !final.sandbox) {
    await exited;
    throw new KataError((final.error?.code ?? 'E_INTERNAL') as never, `${final.error?.message ?? 'sandbox failed'} (log: ${lp})`);
  }
  child.unref(); // the supervisor lives on, owning the sandbox
  const timeline = relativeTo(processStart(), { ...(final.marks ?? {}), ...marks() });
  return { sandbox: final.sandbox, log: lp, timeline };
}

export async function sandboxStatus(
  id: string,
  configFile: string | undefined,
  log: Logger,
): Promise<SandboxView & { guest?: unknown; supervisor: 'running' | 'gone' }> {
  const cfg = loadConfig(configFile, { log });
  const store = new StateStore(cfg.runtime.stateDir, log);
  const s = await store.load(validateId(id));
  if (!supervisorAlive(s)) {
    const v = sandboxView(s);
    return {
      ...v,
      state: s.phase === 'running' ? 'failed' : v.state,
      supervisor: 'gone',
      ...(s.phase === 'running'
        ? {
            error: {
              code: 'E_DAEMON_CRASHED',
              message: `the supervisor of ${id} is gone; run \`kata-resources sandbox down ${id}\` to clean up`,
            },
          }
        : {}),
    };
  }
  const sock = join(store.runDir(id), MGMT_SOCKET);
  const view = await mgmtCall(sock, 'GetSandbox', {});
  let guest: unknown;
  if (view.state === 'running') guest = await mgmtCall(sock, 'GetGuest', {}).catch((e: Error) => ({ error: e.message }));
  return { ...view, ...(guest !== undefined ? { guest } : {}), supervisor: 'running' };
}

/** Take a sandbox down: through its supervisor when alive, else from its persisted state. Idempotent. */
export async function sandboxDown(
  id: string,
  configFile: string | undefined,
  log: Logger,
): Promise<{ id: string; state: 'removed' | 'absent'; via: 'supervisor' | 'state' | 'none'; timings?: Record<string, number> }> {
  const cfg = loadConfig(configFile, { log });
  const store = new StateStore(cfg.runtime.stateDir, log);
  const r = await removeSandbox(validateId(id), store, log);
  // The log goes with the sandbox, but not while a process writes it: when `down` found no state,
  // an `up` whose supervisor has not written it yet may own the log.
  const lp = store.logPath(id);
  if (r.state === 'removed' || (existsSync(lp) && !openByAnotherProcess(lp))) rmSync(lp, { force: true });
  return r;
}

export async function sandboxList(
  configFile: string | undefined,
  log: Logger,
): Promise<(SandboxView & { supervisor: 'running' | 'gone' })[]> {
  const cfg = loadConfig(configFile, { log });
  const store = new StateStore(cfg.runtime.stateDir, log);
  const out: (SandboxView & { supervisor: 'running' | 'gone' })[] = [];
  for (const l of await store.list()) {
    if (!l.state) {
      out.push({
        id: l.id,
        state: 'failed',
        netns: undefined,
        pids: {},
        endpoints: [],
        shares: [],
        volumes: [],
        blockVolumes: [],
        error: { code: 'E_STATE', message: l.error ?? 'unreadable state' },
        supervisor: 'gone',
      });
      continue;
    }
    out.push({ ...sandboxView(l.state), supervisor: supervisorAlive(l.state) ? 'running' : 'gone' });
  }
  return out;
}

/** `exec`: one command in the guest's root environment over the supervisor's exec stream, with this process's stdio. */
export async function sandboxExec(
  id: string,
  req: ExecRequest,
  configFile: string | undefined,
  log: Logger,
  io: ExecIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
): Promise<{ status: number; timedOut: boolean }> {
  const sock = await runningSocket(id, configFile, log);
  return execStream(sock, req, io);
}

/** `exec` with no input and the output collected (the demo's guest commands). */
export async function sandboxExecCollect(
  id: string,
  argv: string[],
  configFile: string | undefined,
  log: Logger,
): Promise<{ status: number; stdout: string; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]): Writable =>
    new Writable({
      write(c: Buffer, _e, cb) {
        into.push(c);
        cb();
      },
    });
  const r = await sandboxExec(id, { argv, terminal: false }, configFile, log, {
    stdin: Readable.from([]),
    stdout: sink(out),
    stderr: sink(err),
  });
  return { status: r.status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

async function runningSocket(id: string, configFile: string | undefined, log: Logger): Promise<string> {
  const cfg = loadConfig(configFile, { log });
  const store = new StateStore(cfg.runtime.stateDir, log);
  const s = await store.load(validateId(id));
  if (!supervisorAlive(s))
    throw new KataError(
      'E_SANDBOX_NOT_FOUND',
      `sandbox ${id} is not running (its supervisor is gone); see \`kata-resources sandbox status ${id}\``,
    );
  return join(store.runDir(id), MGMT_SOCKET);
}

export interface ShareResult {
  name: string;
  source: string;
  readonly: boolean;
  guestPath: string;
}

/** Share a host directory into a running sandbox's virtio-fs export. */
export async function sandboxShare(
  id: string,
  req: { source: string; name?: string; readonly: boolean },
  configFile: string | undefined,
  log: Logger,
): Promise<ShareResult> {
  const sock = await runningSocket(id, configFile, log);
  return mgmtCall(sock, 'Share', req);
}

export async function sandboxUnshare(id: string, name: string, configFile: string | undefined, log: Logger): Promise<void> {
  const sock = await runningSocket(id, configFile, log);
  await mgmtCall(sock, 'Unshare', { name });
}

/** `iface add`: a new tap from an interface description, or an existing link of the sandbox netns. */
export async function ifaceAdd(
  id: string,
  req: MgmtParams<'AddInterface'>,
  configFile: string | undefined,
  log: Logger,
): Promise<Interface> {
  return mgmtCall(await runningSocket(id, configFile, log), 'AddInterface', req, 120_000);
}

export async function ifaceDel(id: string, name: string, configFile: string | undefined, log: Logger): Promise<void> {
  await mgmtCall(await runningSocket(id, configFile, log), 'RemoveInterface', { name }, 120_000);
}

export async function ifaceList(id: string, configFile: string | undefined, log: Logger): Promise<Interface[]> {
  return (await mgmtCall(await runningSocket(id, configFile, log), 'ListInterfaces', {})).Interfaces;
}

export async function routeList(id: string, configFile: string | undefined, log: Logger): Promise<Route[]> {
  return (await mgmtCall(await runningSocket(id, configFile, log), 'ListRoutes', {})).Routes;
}

export async function agentRequest(
  id: string,
  req: MgmtParams<'AgentCall'>,
  configFile: string | undefined,
  log: Logger,
): Promise<unknown> {
  return (await mgmtCall(await runningSocket(id, configFile, log), 'AgentCall', req, 120_000)).result;
}

export async function sandboxMetricsText(id: string, configFile: string | undefined, log: Logger): Promise<string> {
  return (await mgmtCall(await runningSocket(id, configFile, log), 'GetMetrics', {}, 60_000)).text;
}

export async function routeUpdate(id: string, routes: Route[], configFile: string | undefined, log: Logger): Promise<Route[]> {
  return (await mgmtCall(await runningSocket(id, configFile, log), 'UpdateRoutes', { Routes: routes })).Routes;
}

export async function volumeAdd(
  id: string,
  req: MgmtParams<'AddVolume'>,
  configFile: string | undefined,
  log: Logger,
): Promise<VolumeResources> {
  return mgmtCall(await runningSocket(id, configFile, log), 'AddVolume', req, 300_000);
}

export async function volumeDel(
  id: string,
  name: string,
  timeoutMs: number | undefined,
  configFile: string | undefined,
  log: Logger,
): Promise<void> {
  await mgmtCall(
    await runningSocket(id, configFile, log),
    'RemoveVolume',
    { name, ...(timeoutMs ? { timeoutMs } : {}) },
    (timeoutMs ?? 10_000) + 120_000,
  );
}

export async function volumeList(id: string, configFile: string | undefined, log: Logger): Promise<VolumeResources[]> {
  return (await mgmtCall(await runningSocket(id, configFile, log), 'ListVolumes', {})).volumes;
}
