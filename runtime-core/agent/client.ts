/**
 * Host side of the guest agent protocol (guest/agent/protocol.ts): a client on the unix socket that
 * QEMU exposes for the agent's virtserialport:
 *
 *   -chardev socket,id=agent,path=SOCK,server=on,wait=off
 *   -device virtio-serial-pci -device virtserialport,chardev=agent,name=agent.0
 *
 * Line-delimited JSON, request ids, per-call timeouts. An agent error becomes KataError E_AGENT
 * (details.agentCode keeps the agent's code); no answer in time becomes E_TIMEOUT; a closed
 * connection fails the calls in flight with E_AGENT.
 *
 * QEMU's chardev accepts one client at a time, and bytes sent before the guest opens its port wait
 * in QEMU: a Check sent during boot is answered once the agent starts. waitReady relies on that.
 */
import { createConnection, type Socket } from 'node:net';
import type { ARPNeighbor, Interface, Route, Storage } from '../../host/agent-types.js';
import { KataError } from '../../host/errors.js';
import { rootLogger, type Logger } from '../../host/log.js';
import {
  LineSplitter,
  type AgentMethod,
  type AgentResponse,
  type ContainerInfo,
  type CreateContainerParams,
  type ExecResult,
  type MountInfo,
  type OciProcess,
  type OciSpec,
  type ParamsOf,
  type ResultOf,
} from '../../guest/agent/protocol.js';

export type { AgentMethod, ContainerInfo, CreateContainerParams, ExecResult, MountInfo, OciProcess, OciSpec };

export interface AgentClientOptions {
  /** The chardev socket path. */
  socketPath: string;
  /** Default per-call timeout (ms). */
  timeoutMs?: number;
  log?: Logger;
}

export interface CallOptions {
  /** 0: no timeout (Wait, Read: they block by design). */
  timeoutMs?: number;
  /** Rejects the call (E_AGENT, details.aborted) and forgets it; a late answer is dropped. */
  signal?: AbortSignal;
}

interface Pending {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class AgentClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private sock: Socket | undefined;
  private connecting: Promise<Socket> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  /** Resolved by any SERVING answer to a Check, including a late one (see waitReady). */
  private onServing: ((r: ResultOf<'Check'>) => void) | undefined;
  /**
   * Whether the answer waitReady took came from kata-init's early agent (guest/init/early-agent.c):
   * it serves Check and Exec while node's agent starts, and hands every other call over to it.
   */
  earlyAgent = false;
  /** With the early agent: the virtio-fs share kata-init mounted at boot (kata.sharefs=, TAG:MOUNTPOINT). */
  bootShare: string | undefined;

  constructor(opts: AgentClientOptions) {
    this.socketPath = opts.socketPath;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.log = (opts.log ?? rootLogger()).child({ component: 'agent-client', socket: opts.socketPath });
  }

  /** Connect (once); retries while the socket is absent or refused until timeoutMs. */
  async connect(timeoutMs = 5_000): Promise<void> {
    await this.ensureConnected(timeoutMs);
  }

  get connected(): boolean {
    return this.sock !== undefined && !this.sock.destroyed;
  }

  private ensureConnected(timeoutMs: number): Promise<Socket> {
    if (this.closed) return Promise.reject(new KataError('E_AGENT', `agent client for ${this.socketPath} is closed`));
    if (this.sock && !this.sock.destroyed) return Promise.resolve(this.sock);
    if (!this.connecting) {
      this.connecting = this.dial(timeoutMs).finally(() => {
        this.connecting = undefined;
      });
    }
    return this.connecting;
  }

  private async dial(timeoutMs: number): Promise<Socket> {
    const deadline = Date.now() + timeoutMs;
    let lastErr: NodeJS.ErrnoException | undefined;
    for (;;) {
      try {
        const s = await new Promise<Socket>((resolve, reject) => {
          const c = createConnection(this.socketPath);
          c.once('connect', () => {
            c.off('error', reject);
            resolve(c);
          });
          c.once('error', reject);
        });
        this.attach(s);
        return s;
      } catch (e) {
        lastErr = e as NodeJS.ErrnoException;
        const retriable = lastErr.code === 'ENOENT' || lastErr.code === 'ECONNREFUSED' || lastErr.code === 'EAGAIN';
        if (!retriable || Date.now() >= deadline || this.closed) break;
        await sleep(Math.min(20, Math.max(1, deadline - Date.now())));
      }
    }
    const code = lastErr?.code === 'ENOENT' || lastErr?.code === 'ECONNREFUSED' ? 'E_TIMEOUT' : 'E_AGENT';
    throw new KataError(
      code,
      `cannot connect to the agent socket ${this.socketPath} within ${timeoutMs} ms: ${lastErr?.message ?? 'closed'} (is QEMU running with the agent virtserialport?)`,
      { socket: this.socketPath },
    );
  }

  private attach(s: Socket): void {
    this.sock = s;
    const splitter = new LineSplitter(
      (line) => this.onLine(line),
      () => this.log.warn('agent sent an over-long line; dropped'),
    );
    s.on('data', (d: Buffer) => splitter.push(d));
    s.on('error', (e) => this.log.debug({ err: e.message }, 'agent socket error'));
    s.on('close', () => {
      if (this.sock === s) this.sock = undefined;
      this.failAll(
        new KataError('E_AGENT', `the agent connection ${this.socketPath} closed with the call in flight (did QEMU exit?)`, {
          socket: this.socketPath,
        }),
      );
    });
  }

  private onLine(line: string): void {
    let msg: AgentResponse;
    try {
      msg = JSON.parse(line) as AgentResponse;
    } catch {
      this.log.warn({ line: line.slice(0, 200) }, 'agent sent a line that is not JSON');
      return;
    }
    if (typeof msg.id !== 'number') {
      if (msg.error) this.log.warn({ error: msg.error }, 'agent reported an error without a request id');
      return;
    }
    const p = this.pending.get(msg.id);
    const serving = msg.error === undefined && (msg.result as { status?: string } | undefined)?.status === 'SERVING';
    if (serving && (p === undefined || p.method === 'Check')) this.onServing?.(msg.result as ResultOf<'Check'>);
    if (!p) return; // a late answer to a call that timed out
    this.pending.delete(msg.id);
    if (p.timer) clearTimeout(p.timer);
    if (msg.error !== undefined) {
      p.reject(
        new KataError('E_AGENT', `agent ${p.method}: ${msg.error.message} (${msg.error.code})`, {
          method: p.method,
          agentCode: msg.error.code,
        }),
      );
    } else {
      p.resolve(msg.result);
    }
  }

  private failAll(err: KataError): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
  }

  /** Send one request; the returned promise settles with the answer, E_AGENT, or E_TIMEOUT (timeoutMs 0: no timeout). */
  private send(
    sock: Socket,
    method: string,
    params: unknown,
    timeoutMs: number,
    statedTimeoutMs = timeoutMs,
  ): { id: number; promise: Promise<unknown> } {
    const id = this.nextId++;
    const promise = new Promise<unknown>((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.pending.delete(id);
              reject(
                new KataError('E_TIMEOUT', `agent ${method} did not answer within ${statedTimeoutMs} ms (socket ${this.socketPath})`, {
                  method,
                  socket: this.socketPath,
                }),
              );
            }, timeoutMs)
          : undefined;
      this.pending.set(id, { method, resolve, reject, timer });
      sock.write(`${JSON.stringify({ id, method, params: params ?? {} })}\n`);
    });
    return { id, promise };
  }

  /** Generic typed call. */
  async call<M extends AgentMethod>(method: M, params: ParamsOf<M>, opts: CallOptions = {}): Promise<ResultOf<M>> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const started = Date.now();
    const aborted = (): KataError =>
      new KataError('E_AGENT', `agent ${method} was cancelled: ${String(opts.signal?.reason ?? 'aborted')}`, { method, aborted: true });
    if (opts.signal?.aborted) throw aborted();
    const sock = await this.ensureConnected(timeoutMs === 0 ? 5_000 : Math.min(timeoutMs, 5_000));
    const { id, promise } = this.send(
      sock,
      method,
      params,
      timeoutMs === 0 ? 0 : Math.max(1, timeoutMs - (Date.now() - started)),
      timeoutMs,
    );
    let onAbort: (() => void) | undefined;
    const cancelled = opts.signal
      ? new Promise<never>((_, reject) => {
          onAbort = () => {
            const p = this.pending.get(id);
            if (p?.timer) clearTimeout(p.timer);
            this.pending.delete(id);
            reject(aborted());
          };
          opts.signal!.addEventListener('abort', onAbort, { once: true });
        })
      : undefined;
    const result = (await (cancelled ? Promise.race([promise, cancelled]) : promise).finally(() => {
      if (onAbort) opts.signal!.removeEventListener('abort', onAbort);
    })) as ResultOf<M>;
    this.log.debug({ method, ms: Date.now() - started }, 'agent call');
    return result;
  }

  /**
   * Wait until the agent answers Check with SERVING. Connects as soon as the socket exists, sends a
   * Check, and re-sends every few seconds (or after a reconnect); an answer to any of them counts.
   * `signal` aborts early (e.g. QEMU exited). Resolves with the milliseconds waited.
   */
  async waitReady(timeoutMs: number, opts: { signal?: AbortSignal; resendMs?: number } = {}): Promise<number> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    const resendMs = opts.resendMs ?? 3_000;
    const sent: number[] = [];
    let ready = false;
    const servingPromise = new Promise<void>((resolve) => {
      this.onServing = (r) => {
        this.earlyAgent = r.early === true;
        this.bootShare = r.early === true ? r.sharefs : undefined;
        ready = true;
        resolve();
      };
    });
    const aborted = new Promise<void>((resolve) => opts.signal?.addEventListener('abort', () => resolve(), { once: true }));
    try {
      while (!ready) {
        if (opts.signal?.aborted)
          throw new KataError(
            'E_AGENT',
            `waiting for the agent on ${this.socketPath} was aborted: ${String(opts.signal.reason ?? 'aborted')}`,
            { socket: this.socketPath },
          );
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        let sock: Socket;
        try {
          sock = await this.ensureConnected(remaining);
        } catch (e) {
          if (e instanceof KataError && e.code === 'E_TIMEOUT') break;
          throw e;
        }
        const { id, promise } = this.send(sock, 'Check', {}, 0);
        sent.push(id);
        promise.catch(() => {}); // a close fails it; the loop reconnects
        const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
        await Promise.race([servingPromise, aborted, closed, sleep(Math.min(resendMs, Math.max(0, deadline - Date.now())))]);
        if (!ready && sock.destroyed) await sleep(Math.min(20, Math.max(0, deadline - Date.now())));
      }
    } finally {
      this.onServing = undefined;
      for (const id of sent) {
        const p = this.pending.get(id);
        if (p) this.pending.delete(id);
      }
    }
    if (!ready)
      throw new KataError(
        'E_TIMEOUT',
        `the guest agent did not become ready within ${timeoutMs} ms (socket ${this.socketPath}); see the guest console log`,
        { socket: this.socketPath },
      );
    const ms = Date.now() - started;
    this.log.info({ ms }, 'agent ready');
    return ms;
  }

  check(opts?: CallOptions): Promise<ResultOf<'Check'>> {
    return this.call('Check', {}, opts);
  }
  version(opts?: CallOptions): Promise<ResultOf<'Version'>> {
    return this.call('Version', {}, opts);
  }
  updateInterface(iface: Interface, opts?: CallOptions): Promise<Interface> {
    return this.call('UpdateInterface', { interface: iface }, opts);
  }
  updateRoutes(routes: Route[], opts?: CallOptions): Promise<{ Routes: Route[] }> {
    return this.call('UpdateRoutes', { routes: { Routes: routes } }, opts);
  }
  addARPNeighbors(neighbors: ARPNeighbor[], opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('AddARPNeighbors', { neighbors: { ARPNeighbors: neighbors } }, opts);
  }
  listInterfaces(opts?: CallOptions): Promise<{ Interfaces: Interface[] }> {
    return this.call('ListInterfaces', {}, opts);
  }
  listRoutes(opts?: CallOptions): Promise<{ Routes: Route[] }> {
    return this.call('ListRoutes', {}, opts);
  }
  addStorages(storages: Storage[], opts?: CallOptions): Promise<{ mount_points: string[] }> {
    return this.call('AddStorages', { storages }, opts);
  }
  removeStorages(mountPoints: string[], opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('RemoveStorages', { storages: mountPoints.map((mount_point) => ({ mount_point })) }, opts);
  }
  listMounts(opts?: CallOptions): Promise<{ mounts: MountInfo[] }> {
    return this.call('ListMounts', {}, opts);
  }

  /** Run a command in the guest. The call's own timeout is the command's plus a margin. */
  exec(argv: string[], opts: { timeoutMs?: number; input?: string; env?: Record<string, string>; cwd?: string } = {}): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return this.call('Exec', { argv, timeoutMs, input: opts.input, env: opts.env, cwd: opts.cwd }, { timeoutMs: timeoutMs + 10_000 });
  }

  // Containers and processes (Kata's calls; container_id "" = the guest's root environment).

  createContainer(p: CreateContainerParams, opts?: CallOptions): Promise<{ pid: number }> {
    return this.call('CreateContainer', p, { timeoutMs: 120_000, ...opts });
  }
  startContainer(containerId: string, opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('StartContainer', { container_id: containerId }, { timeoutMs: 60_000, ...opts });
  }
  execProcess(containerId: string, execId: string, process: OciProcess, opts?: CallOptions): Promise<{ pid: number }> {
    return this.call('ExecProcess', { container_id: containerId, exec_id: execId, process }, { timeoutMs: 60_000, ...opts });
  }
  signalProcess(containerId: string, execId: string, signal: number, opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('SignalProcess', { container_id: containerId, exec_id: execId, signal }, opts);
  }
  /** The exit status (128 + N for signal N). Blocks without a timeout unless one is given. */
  async waitProcess(containerId: string, execId: string, opts?: CallOptions): Promise<number> {
    return (await this.call('WaitProcess', { container_id: containerId, exec_id: execId }, { timeoutMs: 0, ...opts })).status;
  }
  /** Resolves with the byte count once the data is in the process's stdin pipe. */
  async writeStdin(containerId: string, execId: string, data: Buffer, opts?: CallOptions): Promise<number> {
    const r = await this.call(
      'WriteStdin',
      { container_id: containerId, exec_id: execId, data: data.toString('base64') },
      { timeoutMs: 0, ...opts },
    );
    return r.len;
  }
  /** Up to len bytes once there are any; an empty buffer is EOF. */
  async readStdout(containerId: string, execId: string, len: number, opts?: CallOptions): Promise<Buffer> {
    return Buffer.from(
      (await this.call('ReadStdout', { container_id: containerId, exec_id: execId, len }, { timeoutMs: 0, ...opts })).data,
      'base64',
    );
  }
  async readStderr(containerId: string, execId: string, len: number, opts?: CallOptions): Promise<Buffer> {
    return Buffer.from(
      (await this.call('ReadStderr', { container_id: containerId, exec_id: execId, len }, { timeoutMs: 0, ...opts })).data,
      'base64',
    );
  }
  closeStdin(containerId: string, execId: string, opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('CloseStdin', { container_id: containerId, exec_id: execId }, { timeoutMs: 0, ...opts });
  }
  ttyWinResize(containerId: string, execId: string, rows: number, columns: number, opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('TtyWinResize', { container_id: containerId, exec_id: execId, row: rows, column: columns }, opts);
  }
  /** Kill what is left, runc delete, unmount. timeoutS: how long processes may take to die (0 = no limit). */
  removeContainer(containerId: string, timeoutS = 10, opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('RemoveContainer', { container_id: containerId, timeout: timeoutS }, { timeoutMs: timeoutS * 1000 + 60_000, ...opts });
  }
  async listContainers(opts?: CallOptions): Promise<ContainerInfo[]> {
    return (await this.call('ListContainers', {}, opts)).containers;
  }

  /** Ask the guest to power off. Resolves once the agent acknowledged (the VM exits shortly after). */
  shutdown(opts?: CallOptions): Promise<Record<string, never>> {
    return this.call('Shutdown', {}, opts);
  }

  /** Close the connection; calls in flight fail with E_AGENT. Idempotent. */
  close(): void {
    this.closed = true;
    this.onServing = undefined;
    const s = this.sock;
    this.sock = undefined;
    this.failAll(new KataError('E_AGENT', `agent client for ${this.socketPath} was closed`, { socket: this.socketPath }));
    s?.destroy();
  }
}
