/**
 * Requests on the wire: cookies, the in-flight limit and its FIFO queue, per-request deadlines
 * and AbortSignals, and failing everything at once when the connection breaks. The reply parser
 * calls back into it (ParserHost) as replies complete.
 */
import type { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { abortError, connectionLost, protocolError, requestError, timeoutError } from './errors.js';
import * as P from './protocol.js';
import { type ParserHost, type Pending, ReplyParser } from './reply-parser.js';
import type { Wire } from './wire.js';

export interface RequestOptions {
  /** Rejects the request (E_TIMEOUT, details.aborted); a request already sent has its reply discarded. */
  signal?: AbortSignal;
  /** Deadline for this request in ms (default: the connection's requestTimeoutMs). */
  timeoutMs?: number;
}

interface Request extends Pending {
  flags: number;
  payload: Uint8Array | undefined;
  resolve: () => void;
  reject: (e: KataError) => void;
  timer: NodeJS.Timeout | undefined;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class Pipeline implements ParserHost {
  /** Set once no request may be sent any more: why they are refused. */
  refusal: KataError | undefined;
  /** Set on a hard failure (protocol error, timeout, connection loss). */
  failure: KataError | undefined;
  /** Called once when the server reported ESHUTDOWN (it must get a soft disconnect). */
  onShutdown: () => void = () => {};
  private readonly inflight = new Map<number, Request>();
  private readonly queue: Request[] = [];
  private readonly parser: ReplyParser;
  private nextCookie = 1;
  private corked = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly wire: Wire,
    readonly structured: boolean,
    leftover: Buffer[],
    private readonly opts: { maxInFlight: number; requestTimeoutMs: number; log?: Logger },
  ) {
    this.parser = new ReplyParser(this);
    wire.setSink((d) => {
      this.parser.push(d);
      return true;
    });
    wire.bufferFor = () => this.parser.directTarget();
    for (const d of leftover) this.parser.push(d);
  }

  get uri(): string {
    return this.wire.uri;
  }

  get pending(): number {
    return this.inflight.size + this.queue.length;
  }

  submit(
    type: number,
    flags: number,
    offset: number,
    length: number,
    target: Uint8Array | undefined,
    payload: Uint8Array | undefined,
    o: RequestOptions,
  ): Promise<void> {
    const refused = this.failure ?? this.refusal;
    if (refused) return Promise.reject(refused);
    if (o.signal?.aborted) return Promise.reject(abortError(this.uri, P.commandName(type), o.signal.reason));
    return new Promise<void>((resolve, reject) => {
      const r: Request = {
        cookie: 0,
        type,
        flags,
        offset,
        length,
        target,
        payload,
        abandoned: false,
        error: undefined,
        covered: 0,
        ranges: [],
        resolve,
        reject,
        timer: undefined,
        timeoutMs: o.timeoutMs ?? this.opts.requestTimeoutMs,
        signal: o.signal,
        onAbort: undefined,
      };
      r.timer = setTimeout(() => this.timedOut(r), r.timeoutMs);
      if (o.signal) {
        r.onAbort = () => this.aborted(r);
        o.signal.addEventListener('abort', r.onAbort, { once: true });
      }
      if (this.inflight.size < this.opts.maxInFlight) this.send(r);
      else this.queue.push(r);
    });
  }

  private send(r: Request): void {
    while (this.inflight.has(this.nextCookie)) this.nextCookie = (this.nextCookie % 0xffffffff) + 1;
    r.cookie = this.nextCookie;
    this.nextCookie = (this.nextCookie % 0xffffffff) + 1;
    this.inflight.set(r.cookie, r);
    this.writeRequest(r.type, r.flags, r.cookie, r.offset, r.length, r.payload);
  }

  writeRequest(type: number, flags: number, cookie: number, offset: number, length: number, payload?: Uint8Array): void {
    const h = Buffer.allocUnsafe(P.REQUEST_SIZE);
    h.writeUInt32BE(P.REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(0, 8);
    h.writeUInt32BE(cookie, 12);
    h.writeUInt32BE(Math.floor(offset / 2 ** 32), 16);
    h.writeUInt32BE(offset >>> 0, 20);
    h.writeUInt32BE(length, 24);
    const s = this.wire.socket;
    if (!this.corked) {
      // Requests issued in one tick leave in one writev.
      this.corked = true;
      s.cork();
      process.nextTick(() => {
        this.corked = false;
        s.uncork();
      });
    }
    s.write(h);
    if (payload) s.write(payload);
  }

  lookup(cookie: number): Pending | undefined {
    return this.inflight.get(cookie);
  }

  settle(p: Pending): void {
    const r = p as Request;
    this.inflight.delete(r.cookie);
    this.release(r);
    if (!r.abandoned) {
      if (r.error) {
        const { errno, message, offset } = r.error;
        const where = { offset: r.offset, length: r.length, ...(offset !== undefined ? { errorOffset: offset } : {}) };
        r.reject(requestError(this.uri, P.commandName(r.type), errno, message, where));
      } else r.resolve();
    }
    if (r.error?.errno === P.ESHUTDOWN && !this.refusal) {
      this.refusal = connectionLost(this.uri, 'the server is shutting down (ESHUTDOWN)');
      this.onShutdown();
    }
    this.pump();
  }

  violation(what: string, details?: Record<string, unknown>): void {
    this.fail(protocolError(this.uri, what, details));
  }

  private pump(): void {
    while (this.queue.length > 0 && this.inflight.size < this.opts.maxInFlight) this.send(this.queue.shift()!);
    if (this.pending === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves once nothing is pending (or everything has failed). */
  idle(): Promise<void> {
    return this.pending === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  private release(r: Request): void {
    clearTimeout(r.timer);
    if (r.onAbort) r.signal!.removeEventListener('abort', r.onAbort);
  }

  private timedOut(r: Request): void {
    const e = timeoutError(this.uri, `${P.commandName(r.type)} of ${r.length} bytes at ${r.offset}`, r.timeoutMs);
    this.release(r);
    r.abandoned = true;
    r.reject(e);
    // A server that let one request pass its deadline cannot be trusted with the others.
    this.fail(connectionLost(this.uri, `connection closed: ${e.message}`));
  }

  private aborted(r: Request): void {
    this.release(r);
    r.abandoned = true;
    // Rejected only once the socket no longer reads into the caller's buffer.
    const e = abortError(this.uri, P.commandName(r.type), r.signal!.reason);
    this.wire.whenReleased(r.target, () => r.reject(e));
    const q = this.queue.indexOf(r);
    if (q >= 0) {
      this.queue.splice(q, 1);
      this.pump();
    }
  }

  /** Every pending request fails with `e`, at once. */
  failAll(e: KataError): void {
    const all = [...this.inflight.values(), ...this.queue.splice(0)];
    this.inflight.clear();
    for (const r of all) {
      this.release(r);
      if (!r.abandoned) r.reject(e);
      r.abandoned = true;
    }
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Hard disconnect: every pending request fails with `e` and the socket is destroyed. */
  fail(e: KataError): void {
    if (this.failure) return;
    this.failure = e;
    this.opts.log?.warn({ uri: this.uri, code: e.code, err: e.message }, 'nbd connection failed');
    this.failAll(e);
    this.wire.destroy(e);
  }
}
