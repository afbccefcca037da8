/**
 * A ttRPC client (containerd/ttrpc v1.1.1 client.go semantics), hand-written: there is no
 * maintained ttRPC package for Node. Calls on one connection run concurrently: stream ids are odd,
 * from 1, +2 per call, and each answer is matched to its call by stream id, in whatever order the
 * server finishes them. A reply for an id nobody waits for is dropped with a log line.
 *
 * Failures are TtrpcErrors: E_TTRPC with the peer's status code and message for a non-zero
 * status; E_TTRPC_CLOSED (grpcCode 14) for every pending call when the connection ends (EOF,
 * EPIPE, ECONNRESET, close()); E_TIMEOUT (grpcCode 4) when the call's timeout expires here first.
 */
import { createConnection, type Socket } from 'node:net';
import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import { type Logger, rootLogger } from '../host/log.js';
import { socketPath } from './address.js';
import { GrpcCode } from './codes.js';
import { TtrpcError } from './errors.js';
import { type Frame, type FrameHeader, FrameReader, MESSAGE_LENGTH_MAX, MessageType, writeFrame } from './frame.js';
import { RequestSchema, type Response, ResponseSchema } from './generated/ttrpc/request_pb.js';
import { type MetadataInit, toKeyValues } from './metadata.js';

export interface CallOptions {
  /** Sent as timeout_nano and enforced here too: on expiry the call rejects with E_TIMEOUT (grpcCode 4). */
  timeoutMs?: number;
  metadata?: MetadataInit;
  /** Aborting rejects the call with E_TTRPC grpcCode 1 (CANCELLED); a request already sent still runs on the server. */
  signal?: AbortSignal;
}

/** A generated unary method descriptor, e.g. `Task.method.wait` or `Events.method.forward`. */
export type UnaryMethod<I extends DescMessage, O extends DescMessage> = DescMethod & {
  readonly methodKind: 'unary';
  readonly input: I;
  readonly output: O;
};

interface Pending {
  where: { service: string; method: string };
  resolve(payload: Uint8Array): void;
  reject(e: TtrpcError): void;
}

const MAX_STREAM_ID = 0xffffffff;
/** How many given-up ids are remembered (to drop their late answers without a warning). */
const ABANDONED_MAX = 1024;

export class TtrpcClient {
  private readonly pending = new Map<number, Pending>();
  /** Ids whose callers gave up (timeout, abort): their late replies are dropped quietly. */
  private readonly abandoned = new Set<number>();
  private nextId = 1;
  private closeError: TtrpcError | undefined;
  private socketError: Error | undefined;
  private readonly log: Logger;

  /** Connect to a unix socket ("unix://" prefix allowed). Fails with E_TTRPC_CLOSED (grpcCode 14) if nobody listens. */
  static connect(address: string, opts: { logger?: Logger; timeoutMs?: number } = {}): Promise<TtrpcClient> {
    const path = socketPath(address);
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const timer = setTimeout(() => fail(new Error('timed out')), opts.timeoutMs ?? 10_000);
      const fail = (e: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(
          new TtrpcError(GrpcCode.UNAVAILABLE, `ttrpc: cannot connect to ${path}: ${e.message}`, { code: 'E_TTRPC_CLOSED', cause: e }),
        );
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(new TtrpcClient(socket, { logger: opts.logger, name: path }));
      });
    });
  }

  constructor(
    private readonly socket: Socket,
    opts: { logger?: Logger | undefined; name?: string } = {},
  ) {
    this.log = (opts.logger ?? rootLogger()).child({ component: 'ttrpc-client', peer: opts.name ?? 'socket' });
    const reader = new FrameReader({ frame: (f) => this.onFrame(f), oversized: (h) => this.onOversized(h) });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', (e) => {
      this.socketError ??= e;
    });
    socket.once('close', () => this.fail(this.socketError ? this.socketError.message : 'connection closed by the peer'));
  }

  /** Whether the connection is gone (every later call fails with E_TTRPC_CLOSED). */
  get closed(): boolean {
    return this.closeError !== undefined;
  }

  /** Call a generated unary method and decode its answer. */
  async call<I extends DescMessage, O extends DescMessage>(
    method: UnaryMethod<I, O>,
    request: MessageInitShape<I>,
    opts: CallOptions = {},
  ): Promise<MessageShape<O>> {
    const payload = toBinary(method.input, create(method.input, request));
    const answer = await this.callRaw(method.parent.typeName, method.name, payload, opts);
    try {
      return fromBinary(method.output, answer) as MessageShape<O>;
    } catch (e) {
      throw new TtrpcError(
        GrpcCode.INTERNAL,
        `ttrpc: ${method.parent.typeName}/${method.name}: undecodable answer: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }

  /** Send an encoded payload to service/method; resolves with the answer's encoded payload. */
  callRaw(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    if (this.closeError) return Promise.reject(this.closeError);
    const where = { service, method };
    if (opts.signal?.aborted) return Promise.reject(cancelled(service, method));
    if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) {
      return Promise.reject(
        new TtrpcError(GrpcCode.DEADLINE_EXCEEDED, `ttrpc: ${service}/${method}: timeout ${opts.timeoutMs} ms is not positive`, {
          code: 'E_TIMEOUT',
          details: where,
        }),
      );
    }
    const body = toBinary(
      RequestSchema,
      create(RequestSchema, {
        service,
        method,
        payload,
        timeoutNano: opts.timeoutMs === undefined ? 0n : BigInt(Math.round(opts.timeoutMs * 1e6)),
        metadata: toKeyValues(opts.metadata),
      }),
    );
    if (body.length > MESSAGE_LENGTH_MAX) {
      return Promise.reject(
        new TtrpcError(
          GrpcCode.RESOURCE_EXHAUSTED,
          `ttrpc: ${service}/${method}: request of ${body.length} bytes exceeds the ${MESSAGE_LENGTH_MAX}-byte limit`,
          {
            details: where,
          },
        ),
      );
    }
    const id = this.nextId;
    this.nextId = id + 2 > MAX_STREAM_ID ? 1 : id + 2;
    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => giveUp(cancelled(service, method));
      const done = (): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        this.pending.delete(id);
      };
      const giveUp = (e: TtrpcError): void => {
        done();
        this.abandoned.add(id);
        // A peer that never answers must not grow the set for ever: forget the oldest.
        if (this.abandoned.size > ABANDONED_MAX) this.abandoned.delete(this.abandoned.values().next().value!);
        reject(e);
      };
      this.pending.set(id, {
        where,
        resolve: (p) => {
          done();
          resolve(p);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            giveUp(
              new TtrpcError(GrpcCode.DEADLINE_EXCEEDED, `ttrpc: ${service}/${method}: no answer within ${opts.timeoutMs} ms`, {
                code: 'E_TIMEOUT',
                details: where,
              }),
            ),
          opts.timeoutMs,
        );
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      writeFrame(this.socket, id, MessageType.REQUEST, body);
    });
  }

  /** Close the connection; pending calls fail with E_TTRPC_CLOSED. */
  close(): void {
    this.fail('closed by this client');
    this.socket.destroy();
  }

  private fail(why: string): void {
    if (this.closeError) return;
    this.closeError = new TtrpcError(GrpcCode.UNAVAILABLE, `ttrpc: closed (${why})`, { code: 'E_TTRPC_CLOSED' });
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const p of calls) p.reject(this.closeError);
  }

  private take(streamId: number): Pending | undefined {
    const p = this.pending.get(streamId);
    if (!p) {
      if (this.abandoned.delete(streamId)) this.log.debug({ streamId }, 'ttrpc: late answer for an abandoned call dropped');
      else this.log.warn({ streamId }, 'ttrpc: received message for unknown stream, dropped');
    }
    return p;
  }

  private onOversized(h: FrameHeader): void {
    this.take(h.streamId)?.reject(
      new TtrpcError(GrpcCode.RESOURCE_EXHAUSTED, `ttrpc: answer of ${h.length} bytes exceeds the ${MESSAGE_LENGTH_MAX}-byte limit`),
    );
  }

  private onFrame(f: Frame): void {
    const p = this.take(f.streamId);
    if (!p) return;
    if (f.type !== MessageType.RESPONSE) {
      p.reject(new TtrpcError(GrpcCode.INTERNAL, `ttrpc: unexpected message type ${f.type} on stream ${f.streamId}`));
      return;
    }
    let resp: Response;
    try {
      resp = fromBinary(ResponseSchema, f.data);
    } catch (e) {
      p.reject(
        new TtrpcError(GrpcCode.INTERNAL, `ttrpc: undecodable Response on stream ${f.streamId}: ${(e as Error).message}`, { cause: e }),
      );
      return;
    }
    if (resp.status && resp.status.code !== GrpcCode.OK) {
      p.reject(new TtrpcError(resp.status.code, resp.status.message, { details: p.where }));
      return;
    }
    p.resolve(resp.payload);
  }
}

function cancelled(service: string, method: string): TtrpcError {
  return new TtrpcError(GrpcCode.CANCELLED, `ttrpc: ${service}/${method}: cancelled by the caller`, { details: { service, method } });
}
