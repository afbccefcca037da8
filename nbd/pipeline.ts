/**
 * Requests on the wire: cookies, the in-flight limit and its FIFO queue, per-request deadlines
 * and AbortSignals, and failing everything at once when the connection breaks. The reply parser
 * calls back into it (ParserHost) as replies complete.
 */
import type { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { abortError, connectionLost, protocolError, requestError, timeoutError } from './errors.js';
import * as P from './protocol.js';
import { DIRECT_MIN, type ParserHost, type Pending, ReplyParser } from './reply-parser.js';
import type { Wire } from './wire.js';

export interface RequestOptions {
  /**
   * Rejects the request (E_TIMEOUT, details.aborted). A request already sent has its reply
   * discarded; a read's buffer is not written after the rejection, but an aborted write's payload
   * may still be on its way to the server: leave it unchanged until the client is idle or closed.
   */
  signal?: AbortSignal;
  /** Deadline for this request in ms (default: the connection's requestTimeoutMs). */
  timeoutMs?: number;
}

interface Request extends Pending {
  flags: number;
  payload: Uint8Array | undefined;
  resolve: () => void;
  reject: (e: KataError) => void;
  /** performance.now() by which the reply must have come. */
  deadline: number;
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
  /** Reads in flight long enough to be received straight into the caller's buffer. */
  private bigReads = 0;
  private corked = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepAt = Number.POSITIVE_INFINITY;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly wire: Wire,
    readonly structured: boolean,
    leftover: Buffer[],
    private readonly opts: { maxInFlight: number; requestTimeoutMs: number; log?: Logger },
  ) {
    this.parser = new ReplyParser(this);
    wire.setSink((d, n) => {
      this.parser.push(d, n);
      return true;
    });
    wire.bufferFor = () => this.parser.directTarget();
    for (const d of leftover) this.parser.push(d);
  }

  get uri(): string {
    return this.wire.uri;
  }

  get expectBigRead(): boolean {
    return this.bigReads > 0 || this.inflight.size === 0;
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
        ranges: undefined,
        resolve,
        reject,
        deadline: 0,
        timeoutMs: o.timeoutMs ?? this.opts.requestTimeoutMs,
        signal: o.signal,
        onAbort: undefined,
      };
      r.deadline = performance.now() + r.timeoutMs;
      if (r.deadline < this.sweepAt) this.armSweep(r.deadline);
      else if (this.pending === 0) this.sweepTimer?.ref();
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
    if (isBigRead(r)) this.bigReads++;
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
    if (isBigRead(r)) this.bigReads--;
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
    if (this.pending === 0) {
      // Idle: the deadline timer stays armed (re-arming per request costs) but holds no process alive.
      this.sweepTimer?.unref();
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Resolves once nothing is pending (or everything has failed). */
  idle(): Promise<void> {
    return this.pending === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  private release(r: Request): void {
    if (r.onAbort) r.signal!.removeEventListener('abort', r.onAbort);
  }

  /**
   * One timer for all deadlines (a timer per request costs more than the rest of the request):
   * armed for the earliest deadline, it fails the connection if a request has passed its own,
   * else re-arms for the earliest remaining.
   */
  private armSweep(at: number): void {
    clearTimeout(this.sweepTimer);
    this.sweepAt = at;
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(0, at - performance.now()) + 1);
  }

  private sweep(): void {
    this.sweepAt = Number.POSITIVE_INFINITY;
    this.sweepTimer = undefined;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    for (const r of [...this.inflight.values(), ...this.queue]) {
      if (r.abandoned) continue;
      if (r.deadline <= now) {
        this.timedOut(r);
        return;
      }
      next = Math.min(next, r.deadline);
    }
    if (next !== Number.POSITIVE_INFINITY) this.armSweep(next);
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
    clearTimeout(this.sweepTimer);
    this.sweepAt = Number.POSITIVE_INFINITY;
    this.bigReads = 0;
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

function isBigRead(r: Pending): boolean {
  return r.type === P.CMD.READ && r.length >= DIRECT_MIN;
}
