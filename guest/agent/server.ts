/**
 * The agent's request dispatcher: takes request lines, answers response lines. Transport-free, so
 * the same object serves the virtio-serial port in the guest and a unix socket in host tests.
 *
 * Calls that change guest state (network, storage) run one at a time in arrival order; Check,
 * Version, the List* reads and Exec run at once (a long Exec must not block a health check).
 * Container lifecycle calls (Create/Start/Exec/Remove) run one at a time per container_id, so two
 * containers never wait for each other; the process calls (Wait, Read*, WriteStdin, CloseStdin,
 * Signal, TtyWinResize) run at once: a Read blocked for data never holds up a Signal.
 */
import { release } from 'node:os';
import { containerHandlers } from './container-rpc.js';
import { Containers, type ContainerContext } from './containers.js';
import { addArpNeighbors, listInterfaces, listRoutes, updateInterface, updateRoutes, type NetworkContext } from './network.js';
import {
  AGENT_METHODS,
  AgentError,
  PROTOCOL_VERSION,
  type AgentMethod,
  type AgentRequest,
  type AgentResponse,
  type ExecParams,
  type ExecResult,
} from './protocol.js';
import type { CommandRunner } from './runner.js';
import { addStorages, listMounts, removeStorages, type StorageContext } from './storage.js';
import { stringifyWithBytes } from './wire-bytes.js';

const AGENT_VERSION = '0.2.0';

/** Where containers live in the guest (Kata's layout; runc's default state root). */
const GUEST_CONTAINER_PATHS: Omit<ContainerContext, 'storage' | 'run'> = {
  runc: '/usr/sbin/runc',
  runcRoot: '/run/runc',
  monitor: '/opt/kata-agent/kata-monitor',
  bundleRoot: '/run/kata-containers',
  sharedRoot: '/run/kata-containers/shared/containers',
  ioRoot: '/run/kata-agent',
  cgroupRoot: '/sys/fs/cgroup',
};

export interface AgentServerOptions {
  network: NetworkContext;
  storage: StorageContext;
  /** Runs Exec requests. */
  run: CommandRunner;
  /** runc, kata-monitor and the guest paths for containers (default: GUEST_CONTAINER_PATHS). */
  containers?: Partial<Omit<ContainerContext, 'storage' | 'run'>>;
  /** Called after Shutdown has been answered. In the guest: sync and power off. */
  shutdown: () => void | Promise<void>;
  /** One line per notable event (stderr / the console in the guest). */
  log?: (msg: string) => void;
}

type Handler = (params: Record<string, unknown>) => Promise<unknown>;

const CONCURRENT = new Set<AgentMethod>([
  'Check',
  'Version',
  'ListInterfaces',
  'ListRoutes',
  'ListMounts',
  'Exec',
  'SignalProcess',
  'WaitProcess',
  'WriteStdin',
  'ReadStdout',
  'ReadStderr',
  'CloseStdin',
  'TtyWinResize',
  'ListContainers',
]);
/** Serialised per container_id rather than globally. */
const PER_CONTAINER = new Set<AgentMethod>(['CreateContainer', 'StartContainer', 'ExecProcess', 'RemoveContainer']);
const MAX_EXEC_TIMEOUT_MS = 24 * 3600 * 1000;

function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new AgentError('E_INVALID_ARGUMENT', `${what} must be an object`);
  return v as Record<string, unknown>;
}

function checkExecParams(p: Record<string, unknown>): ExecParams {
  const argv = p.argv;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string') || argv[0] === '') {
    throw new AgentError('E_INVALID_ARGUMENT', 'Exec needs params.argv: a non-empty array of strings (the program and its arguments)');
  }
  const timeoutMs = p.timeoutMs === undefined ? 30_000 : Number(p.timeoutMs);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_EXEC_TIMEOUT_MS)
    throw new AgentError('E_INVALID_ARGUMENT', `Exec timeoutMs ${String(p.timeoutMs)} must be a positive number of milliseconds`);
  if (p.input !== undefined && typeof p.input !== 'string') throw new AgentError('E_INVALID_ARGUMENT', 'Exec input must be a string');
  if (p.cwd !== undefined && typeof p.cwd !== 'string') throw new AgentError('E_INVALID_ARGUMENT', 'Exec cwd must be a string');
  const env = p.env === undefined ? undefined : obj(p.env, 'Exec env');
  if (env && !Object.values(env).every((v) => typeof v === 'string'))
    throw new AgentError('E_INVALID_ARGUMENT', 'Exec env values must be strings');
  return {
    argv: argv as string[],
    timeoutMs,
    input: p.input as string | undefined,
    cwd: p.cwd as string | undefined,
    env: env as Record<string, string> | undefined,
  };
}

export class AgentServer {
  private readonly handlers: Record<AgentMethod, Handler>;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly containerChains = new Map<string, Promise<unknown>>();
  private shuttingDown = false;

  constructor(private readonly opts: AgentServerOptions) {
    const net = opts.network;
    const st = opts.storage;
    const containers = new Containers({ ...GUEST_CONTAINER_PATHS, ...opts.containers, storage: st, run: opts.run });
    this.handlers = {
      ...(containerHandlers(containers) as Record<AgentMethod, Handler>),
      Check: async () => ({ status: this.shuttingDown ? 'NOT_SERVING' : 'SERVING' }),
      Version: async () => ({ grpc_version: PROTOCOL_VERSION, agent_version: AGENT_VERSION, kernel_release: release() }),
      UpdateInterface: async (p) => updateInterface(net, obj(p.interface, 'params.interface') as never),
      UpdateRoutes: async (p) => updateRoutes(net, obj(p.routes, 'params.routes').Routes as never),
      AddARPNeighbors: async (p) => addArpNeighbors(net, obj(p.neighbors, 'params.neighbors').ARPNeighbors as never),
      ListInterfaces: async () => listInterfaces(net),
      ListRoutes: async () => listRoutes(net),
      AddStorages: async (p) => addStorages(st, p.storages as never),
      RemoveStorages: async (p) => removeStorages(st, p.storages as never),
      ListMounts: async () => listMounts(st),
      Exec: async (p) => this.exec(checkExecParams(p)),
      Shutdown: async () => {
        this.shuttingDown = true;
        return {};
      },
    };
  }

  private async exec(p: ExecParams): Promise<ExecResult> {
    const r = await this.opts.run(p.argv[0]!, p.argv.slice(1), { timeoutMs: p.timeoutMs, input: p.input, env: p.env, cwd: p.cwd ?? '/' });
    if (r.exitCode === -1 && !r.timedOut) throw new AgentError('E_EXEC', `cannot run ${p.argv[0]}: ${r.stderr.trim()}`);
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut, truncated: r.truncated };
  }

  /** Answer one request line. Always resolves to one response line (without the newline). */
  async handleLine(line: string): Promise<string> {
    let req: AgentRequest;
    try {
      req = JSON.parse(line) as AgentRequest;
      if (
        req === null ||
        typeof req !== 'object' ||
        (typeof req.id !== 'number' && typeof req.id !== 'string') ||
        typeof req.method !== 'string'
      ) {
        throw new Error('a request is {"id": number|string, "method": string, "params": object}');
      }
    } catch (e) {
      return JSON.stringify({
        id: null,
        error: { code: 'E_PARSE', message: `bad request line: ${(e as Error).message}` },
      } satisfies AgentResponse);
    }
    const response = await this.dispatch(req);
    if (req.method === 'Shutdown' && response.error === undefined) {
      // Answer first; the transport writes the response before the shutdown callback runs.
      setTimeout(() => void Promise.resolve(this.opts.shutdown()).catch(() => {}), 50);
    }
    return stringifyWithBytes(response);
  }

  private async dispatch(req: AgentRequest): Promise<AgentResponse> {
    const method = req.method as AgentMethod;
    if (!AGENT_METHODS.includes(method)) {
      return {
        id: req.id,
        error: {
          code: 'E_UNIMPLEMENTED',
          message: `method "${req.method}" is not implemented by this agent (known: ${AGENT_METHODS.join(', ')})`,
        },
      };
    }
    const handler = this.handlers[method];
    const call = async (): Promise<AgentResponse> => {
      const started = Date.now();
      try {
        const params = req.params === undefined || req.params === null ? {} : obj(req.params, 'params');
        const result = await handler(params);
        this.opts.log?.(`${method} ok (${Date.now() - started} ms)`);
        return { id: req.id, result };
      } catch (e) {
        const code = e instanceof AgentError ? e.code : 'E_INTERNAL';
        const message = e instanceof Error ? e.message : String(e);
        this.opts.log?.(`${method} failed: ${code} ${message}`);
        return { id: req.id, error: { code, message } };
      }
    };
    if (CONCURRENT.has(method)) return call();
    if (PER_CONTAINER.has(method)) {
      const key = String((req.params as { container_id?: unknown } | undefined)?.container_id ?? '');
      const tail = (this.containerChains.get(key) ?? Promise.resolve()).then(call);
      const settled = tail.catch(() => {});
      this.containerChains.set(key, settled);
      void settled.then(() => {
        if (this.containerChains.get(key) === settled) this.containerChains.delete(key);
      });
      return tail;
    }
    const next = this.chain.then(call);
    this.chain = next.catch(() => {});
    return next;
  }
}
