import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { KataError } from '../../../host/errors.js';
import type { Logger } from '../../../host/log.js';
import { sleep } from '../../../host/retry.js';

/**
 * A QMP client of our own: newline-delimited JSON over QEMU's monitor unix socket.
 *
 *   QEMU -> {"QMP": {"version": ..., "capabilities": [...]}}          greeting, once
 *   us   -> {"execute": "qmp_capabilities", "id": 1}                  leaves negotiation mode
 *   us   -> {"execute": CMD, "arguments": {...}, "id": N}
 *   QEMU -> {"return": ..., "id": N}  or  {"error": {"class", "desc"}, "id": N}
 *   QEMU -> {"event": NAME, "data": {...}, "timestamp": {...}}         at any time
 *
 * Every command has a timeout (E_TIMEOUT; a late answer is dropped). Errors QEMU returns are
 * QmpError (E_QMP) carrying QEMU's error class and description. Events are emitted as 'event' and
 * can be awaited with waitEvent (register before issuing the command that causes them).
 */

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string }; capabilities: string[] };
}

/** QEMU's error class when the connection, not QEMU, ended the command. */
const QMP_DISCONNECTED = 'Disconnected';

export class QmpError extends KataError {
  readonly qmpClass: string;
  readonly desc: string;
  readonly command: string;

  constructor(command: string, qmpClass: string, desc: string) {
    super('E_QMP', qmpClass === QMP_DISCONNECTED ? `QMP ${command}: ${desc}` : `QMP ${command} failed: ${qmpClass}: ${desc}`, {
      command,
      qmpClass,
      desc,
    });
    this.name = 'QmpError';
    this.qmpClass = qmpClass;
    this.desc = desc;
    this.command = command;
  }
}

export interface QmpConnectOptions {
  log?: Logger;
  /** Total time to wait for the socket to appear and accept, and for greeting + handshake (default 10 s). */
  connectTimeoutMs?: number;
  /** Default timeout of each command (default 10 s). */
  commandTimeoutMs?: number;
  /** Stop retrying early (e.g. when QEMU has exited). */
  signal?: AbortSignal;
}

export interface ExecuteOptions {
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

function connectOnce(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path });
    const onError = (e: Error): void => {
      s.destroy();
      reject(e);
    };
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  /** What QEMU said when we connected. */
  greeting: QmpGreeting | undefined;

  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedFlag = false;
  private closeReason = 'connection closed';
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: unknown) => void } | undefined;
  private readonly closedPromise: Promise<void>;

  private constructor(
    private readonly sock: Socket,
    readonly path: string,
    private readonly log: Logger | undefined,
    private readonly commandTimeoutMs: number,
  ) {
    super();
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => {
      this.closeReason = `socket error: ${e.message}`;
      this.log?.debug({ err: e, qmp: path }, 'QMP socket error');
    });
    this.closedPromise = new Promise((resolve) => {
      sock.once('close', () => {
        this.onClose();
        resolve();
      });
    });
  }

  /**
   * Connect to QEMU's QMP socket, retrying while it does not exist yet or refuses (QEMU is still
   * starting), read the greeting and negotiate capabilities.
   */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    let sock: Socket | undefined;
    let lastErr: NodeJS.ErrnoException | undefined;
    // A failed attempt costs microseconds (ENOENT / ECONNREFUSED) and QEMU listens within tens of
    // ms: poll at a short fixed interval; a growing backoff would overshoot its readiness.
    const delay = 3;
    for (;;) {
      if (opts.signal?.aborted) {
        throw new KataError('E_QMP', `QMP ${path}: gave up connecting: ${String(opts.signal.reason ?? 'aborted')}`, {
          qmp: path,
          qmpClass: QMP_DISCONNECTED,
        });
      }
      try {
        sock = await connectOnce(path);
        break;
      } catch (e) {
        lastErr = e as NodeJS.ErrnoException;
        if (!RETRYABLE.has(lastErr.code ?? '')) {
          throw new KataError(
            'E_QMP',
            `QMP ${path}: cannot connect: ${lastErr.message}`,
            { qmp: path, qmpClass: QMP_DISCONNECTED },
            { cause: e },
          );
        }
      }
      if (Date.now() + delay > deadline) {
        throw new KataError(
          'E_TIMEOUT',
          `QMP socket ${path} did not accept a connection within ${timeoutMs} ms (last error ${lastErr?.code ?? '?'}); is QEMU running with -qmp unix:${path},server=on,wait=off?`,
          { qmp: path },
        );
      }
      await sleep(delay);
    }
    const c = new QmpClient(sock, path, opts.log, opts.commandTimeoutMs ?? 10_000);
    try {
      const remaining = Math.max(1, deadline - Date.now());
      c.greeting = await c.readGreeting(remaining, opts.signal);
      await c.execute('qmp_capabilities', undefined, { timeoutMs: Math.max(1000, deadline - Date.now()) });
    } catch (e) {
      c.destroy();
      throw e;
    }
    opts.log?.debug({ qmp: path, qemu: c.greeting.QMP.version.qemu }, 'QMP connected');
    return c;
  }

  private readGreeting(timeoutMs: number, signal?: AbortSignal): Promise<QmpGreeting> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.greetingWaiter = undefined;
        reject(new KataError('E_TIMEOUT', `QMP ${this.path}: no greeting within ${timeoutMs} ms`, { qmp: this.path }));
      }, timeoutMs);
      const onAbort = (): void => {
        clearTimeout(timer);
        this.greetingWaiter = undefined;
        reject(
          new KataError('E_QMP', `QMP ${this.path}: gave up waiting for the greeting: ${String(signal?.reason ?? 'aborted')}`, {
            qmp: this.path,
            qmpClass: QMP_DISCONNECTED,
          }),
        );
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.greetingWaiter = {
        resolve: (g) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(g);
        },
        reject: (e) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Resolves when the connection has closed (QEMU quit or died, or close() was called). */
  get whenClosed(): Promise<void> {
    return this.closedPromise;
  }

  /** Run a QMP command; resolves with its "return" value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: ExecuteOptions = {}): Promise<T> {
    if (this.closedFlag)
      return Promise.reject(new QmpError(command, QMP_DISCONNECTED, `connection to ${this.path} is closed (${this.closeReason})`));
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { command, resolve: resolve as (v: unknown) => void, reject, timer: undefined };
      p.timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new KataError('E_TIMEOUT', `QMP ${command} got no answer within ${timeoutMs} ms (QEMU ${this.path} busy or hung)`, {
            command,
            qmp: this.path,
            timeoutMs,
          }),
        );
      }, timeoutMs);
      this.pending.set(id, p);
      const msg = JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
      this.log?.debug({ qmp: this.path, command, id }, 'QMP execute');
      this.sock.write(`${msg}\n`);
    });
  }

  /**
   * Wait for an event matching name (and predicate) within timeoutMs. Start waiting BEFORE the command
   * that causes the event. Rejects with E_TIMEOUT, or E_QMP (Disconnected) if the connection closes.
   */
  waitEvent(name: string, predicate: (e: QmpEvent) => boolean = () => true, timeoutMs = 10_000): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      const onEvent = (e: QmpEvent): void => {
        if (e.event !== name) return;
        let ok: boolean;
        try {
          ok = predicate(e);
        } catch {
          ok = false;
        }
        if (!ok) return;
        cleanup();
        resolve(e);
      };
      const onClose = (): void => {
        cleanup();
        reject(new QmpError(`wait ${name}`, QMP_DISCONNECTED, `connection to ${this.path} closed before the event (${this.closeReason})`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new KataError('E_TIMEOUT', `QMP event ${name} did not arrive within ${timeoutMs} ms`, { event: name, qmp: this.path, timeoutMs }),
        );
      }, timeoutMs);
      if (this.closedFlag) {
        onClose();
        return;
      }
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  /** Close the connection (pending commands fail as Disconnected). */
  async close(): Promise<void> {
    if (!this.closedFlag) {
      this.closeReason = 'closed by us';
      this.sock.end();
      const t = setTimeout(() => this.sock.destroy(), 500);
      await this.closedPromise;
      clearTimeout(t);
    }
  }

  private destroy(): void {
    this.sock.destroy();
  }

  private onData(d: string): void {
    this.buf += d;
    let i;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (line !== '') this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.log?.warn({ qmp: this.path, line: line.slice(0, 200) }, 'QMP: unparseable line ignored');
      return;
    }
    if ('QMP' in msg) {
      const w = this.greetingWaiter;
      this.greetingWaiter = undefined;
      w?.resolve(msg as unknown as QmpGreeting);
      return;
    }
    if (typeof msg.event === 'string') {
      this.log?.debug({ qmp: this.path, event: msg.event, data: msg.data }, 'QMP event');
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    if ('return' in msg || 'error' in msg) {
      let id = typeof msg.id === 'number' ? msg.id : undefined;
      // Answers come in order; one without an id (e.g. a parse error) belongs to the oldest command.
      if (id === undefined) id = this.pending.keys().next().value;
      const p = id === undefined ? undefined : this.pending.get(id);
      if (!p || id === undefined) {
        this.log?.debug({ qmp: this.path, id: msg.id }, 'QMP: answer to a command no longer waited for');
        return;
      }
      this.pending.delete(id);
      clearTimeout(p.timer);
      if ('error' in msg) {
        const err = (msg.error ?? {}) as { class?: string; desc?: string };
        p.reject(new QmpError(p.command, err.class ?? 'GenericError', err.desc ?? 'unknown error'));
      } else {
        p.resolve(msg.return);
      }
    }
  }

  private onClose(): void {
    this.closedFlag = true;
    const w = this.greetingWaiter;
    this.greetingWaiter = undefined;
    w?.reject(new QmpError('greeting', QMP_DISCONNECTED, `connection to ${this.path} closed before the greeting`));
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new QmpError(p.command, QMP_DISCONNECTED, `connection to ${this.path} closed before the answer (${this.closeReason})`));
      this.pending.delete(id);
    }
    this.emit('close');
  }
}
