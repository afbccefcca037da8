/**
 * A ttRPC server (containerd/ttrpc v1.1.1 semantics), hand-written: there is no maintained ttRPC
 * package for Node. Services are the generated service descriptors (@bufbuild/protobuf v2);
 * a handler gets the decoded request and a context (metadata, deadline as an AbortSignal) and
 * returns the response message (or throws; see statusFromError for the status it becomes).
 *
 * Routing answers as Go's does: UNIMPLEMENTED "service X" / "method X" for an unknown route,
 * INVALID_ARGUMENT for a Request that does not decode or an even stream id. One deviation: a
 * request payload that does not decode answers INVALID_ARGUMENT (Go says INTERNAL), since the
 * caller sent it. Listens on a unix socket path (mode 0600) or on a listening fd handed over by
 * the parent (containerd's runc shim gets its socket as fd 3).
 */
import { existsSync, chmodSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { DescMessage, Message, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { KataError } from '../host/errors.js';
import { type Logger, rootLogger } from '../host/log.js';
import { socketPath } from './address.js';
import { GrpcCode } from './codes.js';
import type { Metadata } from './metadata.js';
import { ServerConnection } from './server-connection.js';

export interface CallContext {
  /** Full proto service name, e.g. "containerd.task.v2.Task". */
  readonly service: string;
  /** Method name as in the proto, e.g. "Wait". */
  readonly method: string;
  readonly metadata: Metadata;
  /**
   * Aborted when the request's timeout_nano expires (reason: a TtrpcError E_TIMEOUT, and the
   * caller has already been answered DEADLINE_EXCEEDED), when the connection closes, or when the
   * server's close() runs out of time.
   */
  readonly signal: AbortSignal;
  /** The request's deadline in Date.now() milliseconds, if it carried a timeout. */
  readonly deadline: number | undefined;
}

/** Return the response (an init object or a message); undefined means an all-default message (e.g. Empty). */
type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => MessageInitShape<O> | undefined | Promise<MessageInitShape<O> | undefined>;

/** Handlers by the generated method's local name (`state`, `create`, ...); a missing one answers UNIMPLEMENTED. */
export type ServiceHandlers<T extends GenServiceMethods> = {
  [K in keyof T]?: UnaryHandler<T[K]['input'], T[K]['output']>;
};

export interface Route {
  input: DescMessage;
  output: DescMessage;
  handler: (request: Message, ctx: CallContext) => unknown;
}

export type ListenTarget = { path: string } | { fd: number };

const SOCKET_PATH_MAX = 107;

export class TtrpcServer {
  private readonly services = new Map<string, Map<string, Route>>();
  private readonly connections = new Set<ServerConnection>();
  private readonly log: Logger;
  private server: Server | undefined;
  private closing: Promise<void> | undefined;

  constructor(opts: { logger?: Logger } = {}) {
    this.log = opts.logger ?? rootLogger().child({ component: 'ttrpc-server' });
  }

  /** Serve a generated service; may be called before or after listen(). */
  register<T extends GenServiceMethods>(service: GenService<T>, handlers: ServiceHandlers<T>): this {
    const methods = this.services.get(service.typeName) ?? new Map<string, Route>();
    for (const [local, handler] of Object.entries(handlers) as [string, Route['handler'] | undefined][]) {
      const m = service.method[local];
      if (!m) throw new KataError('E_INVALID_ARGUMENT', `service ${service.typeName} has no method "${local}"`);
      if (!handler) continue;
      if (m.methodKind !== 'unary') throw new KataError('E_UNSUPPORTED', `${service.typeName}/${m.name}: only unary methods are served`);
      if (methods.has(m.name)) throw new KataError('E_INVALID_ARGUMENT', `${service.typeName}/${m.name} is registered twice`);
      methods.set(m.name, { input: m.input, output: m.output, handler });
    }
    this.services.set(service.typeName, methods);
    return this;
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Start accepting. A path's stale socket (nobody listening) is replaced; the socket gets mode 0600. */
  async listen(target: ListenTarget): Promise<void> {
    if (this.server) throw new KataError('E_INTERNAL', 'ttrpc server: listen() called twice');
    const server = createServer((s) => this.accept(s));
    this.server = server;
    if ('fd' in target) return listenOn(server, () => server.listen({ fd: target.fd }));
    const path = socketPath(target.path);
    if (Buffer.byteLength(path) > SOCKET_PATH_MAX) {
      throw new KataError(
        'E_SOCKET_PATH_TOO_LONG',
        `ttrpc socket ${path} is longer than ${SOCKET_PATH_MAX} bytes: use a shorter directory`,
      );
    }
    if (existsSync(path)) {
      if (await isServed(path)) throw new KataError('E_INVALID_ARGUMENT', `ttrpc socket ${path} is already served by another process`);
      unlinkSync(path);
    }
    // bind() happens inside listen(), synchronously: the umask makes the socket 0600 from its
    // first moment, and is restored before anything else runs.
    await listenOn(server, () => {
      const umask = process.umask(0o177);
      try {
        server.listen(path);
      } finally {
        process.umask(umask);
      }
    });
    chmodSync(path, 0o600);
  }

  /**
   * Stop accepting, let every connection answer what it has in flight (then close it), and wait
   * up to timeoutMs; after that, connections are destroyed and running handlers aborted.
   */
  close(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(opts.timeoutMs ?? 5000);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    const server = this.server;
    const stopped = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const c of this.connections) c.shutdown();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), timeoutMs);
    });
    const drained = Promise.all([...this.connections].map(async (c) => Promise.all([c.settled(), c.closed]))).then(() => false);
    if (await Promise.race([drained, expired])) {
      this.log.warn({ connections: this.connections.size }, 'ttrpc server: close timed out, dropping connections');
      for (const c of this.connections) c.destroy();
    }
    clearTimeout(timer);
    await Promise.all([...this.connections].map((c) => c.closed));
    await stopped;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(socket, (s, m) => this.route(s, m), this.log);
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  private route(service: string, method: string): Route | { code: number; message: string } {
    const methods = this.services.get(service);
    if (!methods) return { code: GrpcCode.UNIMPLEMENTED, message: `service ${service}` };
    return methods.get(method) ?? { code: GrpcCode.UNIMPLEMENTED, message: `method ${method}` };
  }
}

function listenOn(server: Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void =>
      reject(new KataError('E_INVALID_ARGUMENT', `ttrpc server cannot listen: ${e.message}`, {}, { cause: e }));
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve();
    });
    start();
  });
}

/** Whether something accepts connections on the unix socket at path. */
function isServed(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The handlers a generated service takes: `ServiceImpl<typeof Task>` is `{ state?, create?, ... }`. */
export type ServiceImpl<S> = S extends GenService<infer T> ? ServiceHandlers<T> : never;
