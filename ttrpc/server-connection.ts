/**
 * One accepted ttRPC connection on the server side (Go's serverConn, ttrpc v1.1.1 server.go):
 * every Request runs at once in its own promise and is answered on its stream id when it
 * finishes, so answers go out in completion order and a blocking call (Wait) never holds up the
 * others. Frames of other types are ignored, as Go's server does for forward compatibility.
 */
import type { Socket } from 'node:net';
import { create, type DescMessage, fromBinary, type Message, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import type { Logger } from '../host/log.js';
import { GrpcCode } from './codes.js';
import { statusFromError, TtrpcError } from './errors.js';
import { type Frame, type FrameHeader, FrameReader, MESSAGE_LENGTH_MAX, MessageType, writeFrame } from './frame.js';
import { type Request, RequestSchema, ResponseSchema } from './generated/ttrpc/request_pb.js';
import { fromKeyValues } from './metadata.js';
import type { CallContext, Route } from './server.js';

/** Room for the Response's own fields around the payload (tag + length varint). */
const RESPONSE_OVERHEAD = 16;
/** setTimeout's largest delay; a longer timeout_nano is treated as no deadline. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Resolve = (service: string, method: string) => Route | { code: number; message: string };

export class ServerConnection {
  private readonly active = new Set<{ abort: AbortController; done: Promise<void> }>();
  private closing = false;
  readonly closed: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly resolve: Resolve,
    private readonly log: Logger,
  ) {
    const reader = new FrameReader({ frame: (f) => this.onFrame(f), oversized: (h) => this.onOversized(h) });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', (e) => this.log.debug({ err: e.message }, 'ttrpc server connection error'));
    this.closed = new Promise((r) => socket.once('close', () => r()));
    socket.once('close', () => this.abortAll());
  }

  get inFlight(): number {
    return this.active.size;
  }

  /** Answer what is in flight, then close; new requests that arrive meanwhile are still served. */
  shutdown(): void {
    this.closing = true;
    if (this.active.size === 0) this.socket.end();
  }

  /** Drop the connection now: running handlers see their signal abort (E_TTRPC_CLOSED). */
  destroy(): void {
    this.abortAll();
    this.socket.destroy();
  }

  private abortAll(): void {
    for (const call of this.active) {
      if (!call.abort.signal.aborted) call.abort.abort(new TtrpcError(GrpcCode.UNAVAILABLE, 'ttrpc: closed', { code: 'E_TTRPC_CLOSED' }));
    }
  }

  /** Every call still running has finished (answered, and its handler settled). */
  async settled(): Promise<void> {
    await Promise.all([...this.active].map((c) => c.done));
  }

  private send(streamId: number, status: { code: number; message: string } | undefined, payload?: Uint8Array): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    const body = toBinary(ResponseSchema, create(ResponseSchema, { status, payload }));
    writeFrame(this.socket, streamId, MessageType.RESPONSE, body);
  }

  private onOversized(h: FrameHeader): void {
    this.log.warn({ streamId: h.streamId, length: h.length }, 'ttrpc: oversized request dropped');
    this.send(h.streamId, {
      code: GrpcCode.RESOURCE_EXHAUSTED,
      message: `message length ${h.length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
    });
  }

  private onFrame(f: Frame): void {
    if (f.type !== MessageType.REQUEST) return;
    let req: Request;
    try {
      req = fromBinary(RequestSchema, f.data);
    } catch (e) {
      this.send(f.streamId, { code: GrpcCode.INVALID_ARGUMENT, message: `unmarshal request error: ${(e as Error).message}` });
      return;
    }
    if (f.streamId % 2 !== 1) {
      this.send(f.streamId, { code: GrpcCode.INVALID_ARGUMENT, message: 'StreamID must be odd for client initiated streams' });
      return;
    }
    const abort = new AbortController();
    const call = { abort, done: Promise.resolve() };
    this.active.add(call);
    call.done = this.run(f.streamId, req, abort).finally(() => {
      this.active.delete(call);
      if (this.closing && this.active.size === 0) this.socket.end();
    });
  }

  private async run(streamId: number, req: Request, abort: AbortController): Promise<void> {
    let answered = false;
    const answer = (status: { code: number; message: string } | undefined, payload?: Uint8Array): void => {
      if (answered) return;
      answered = true;
      this.send(streamId, status, payload);
    };
    const route = this.resolve(req.service, req.method);
    if (!('handler' in route)) return answer(route);

    let deadline: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    if (req.timeoutNano !== 0n) {
      const ms = Math.max(0, Number(req.timeoutNano) / 1e6);
      deadline = Date.now() + ms;
      if (ms <= MAX_TIMER_MS) {
        timer = setTimeout(() => {
          abort.abort(new TtrpcError(GrpcCode.DEADLINE_EXCEEDED, 'context deadline exceeded', { code: 'E_TIMEOUT' }));
          answer({ code: GrpcCode.DEADLINE_EXCEEDED, message: 'context deadline exceeded' });
        }, ms);
      }
    }
    try {
      let input: Message;
      try {
        input = fromBinary(route.input, req.payload);
      } catch (e) {
        return answer({ code: GrpcCode.INVALID_ARGUMENT, message: `ttrpc: error unmarshalling payload: ${(e as Error).message}` });
      }
      const ctx: CallContext = {
        service: req.service,
        method: req.method,
        metadata: fromKeyValues(req.metadata),
        signal: abort.signal,
        deadline,
      };
      const out = await route.handler(input, ctx);
      const payload = toBinary(route.output, create(route.output, (out ?? undefined) as MessageInitShape<DescMessage> | undefined));
      if (payload.length + RESPONSE_OVERHEAD > MESSAGE_LENGTH_MAX) {
        return answer({
          code: GrpcCode.RESOURCE_EXHAUSTED,
          message: `response length ${payload.length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
        });
      }
      answer(undefined, payload);
    } catch (e) {
      if (answered) {
        this.log.debug({ service: req.service, method: req.method, err: (e as Error).message }, 'ttrpc: handler failed after its deadline');
      }
      answer(statusFromError(e));
    } finally {
      clearTimeout(timer);
    }
  }
}
