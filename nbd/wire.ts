/**
 * The socket under an NBD connection: connect to a unix or TCP address within a deadline, read
 * with net's `onread` and hand each batch of bytes to the current sink: the handshake's
 * WireReader first, then the transmission reply parser. Reads go into one reused buffer, except
 * that while a large read payload is arriving the parser offers the caller's own buffer, so the
 * kernel copies the data straight to where it belongs (no copy in JavaScript).
 */
import { connect, type Socket } from 'node:net';
import type { KataError } from '../host/errors.js';
import { abortError, connectionLost, timeoutError } from './errors.js';
import type { NbdAddress } from './uri.js';

/** Consumes data[0, length), valid only during the call; returning false pauses the socket. */
export type Sink = (data: Buffer, length: number) => boolean;

const READ_BUFFER = 1024 * 1024;
/** What the handshake reader keeps before pausing the socket (replies are far smaller). */
const HANDSHAKE_HIGH_WATER = 256 * 1024;

export class Wire {
  private sink: Sink = () => true;
  /** Where the next read may go instead of the shared buffer (the caller's read buffer). */
  bufferFor: () => Uint8Array | undefined = () => undefined;
  /** The caller's buffer handed to the socket for the coming read, if any. */
  private lent: Uint8Array | undefined;
  private readonly afterRead: (() => void)[] = [];
  /** Why the socket ended, once it has. */
  failure: KataError | undefined;
  private readonly closeWaiters: (() => void)[] = [];
  closed = false;

  constructor(
    readonly socket: Socket,
    readonly uri: string,
    /** The reused read buffer. */
    private readonly shared: Buffer,
  ) {
    socket.on('error', (e) => {
      this.failure ??= connectionLost(uri, `connection failed: ${e.message}`, e);
    });
    socket.on('close', () => {
      this.closed = true;
      this.failure ??= connectionLost(uri, 'the server closed the connection');
      this.lent = undefined;
      for (const f of this.afterRead.splice(0)) f();
      for (const w of this.closeWaiters.splice(0)) w();
    });
  }

  setSink(sink: Sink): void {
    this.sink = sink;
  }

  /** Called by the socket after each read (and once at the start): the memory the next read goes to. */
  nextBuffer(): Uint8Array {
    this.lent = this.bufferFor();
    return this.lent ?? this.shared;
  }

  /** Called by the socket after every read with the buffer nextBuffer() gave. */
  deliver(buf: Uint8Array, n: number): boolean {
    const more = this.sink(buf instanceof Buffer ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.length), n);
    this.lent = undefined;
    for (const f of this.afterRead.splice(0)) f();
    return more;
  }

  /**
   * Runs `fn` once the socket can no longer write into `target`: at once, or, when part of it is
   * lent to the coming read, after that read (or the close).
   */
  whenReleased(target: Uint8Array | undefined, fn: () => void): void {
    const l = this.lent;
    if (
      l &&
      target &&
      l.buffer === target.buffer &&
      l.byteOffset < target.byteOffset + target.length &&
      target.byteOffset < l.byteOffset + l.length
    ) {
      this.afterRead.push(fn);
    } else fn();
  }

  /** Hard disconnect; `why` becomes the failure every waiter sees. */
  destroy(why: KataError): void {
    this.failure ??= why;
    this.socket.destroy();
  }

  /** Resolves once the socket has closed (immediately if it has). */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((r) => this.closeWaiters.push(r));
  }
}

/** Connect within `timeoutMs` (and `signal`); the socket's bytes go to the Wire's sink. */
export function openWire(addr: NbdAddress, uri: string, timeoutMs: number, signal?: AbortSignal): Promise<Wire> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(uri, 'connect', signal.reason));
    let wire: Wire | undefined;
    const shared = Buffer.allocUnsafe(READ_BUFFER);
    const socket = connect({
      ...(addr.transport === 'unix' ? { path: addr.socket } : { host: addr.host, port: addr.port }),
      onread: { buffer: () => wire?.nextBuffer() ?? shared, callback: (n: number, buf: Uint8Array) => wire!.deliver(buf, n) },
    });
    wire = new Wire(socket, uri, shared);
    const done = (err?: KataError): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('connect', onConnect);
      socket.off('close', onClose);
      if (err) {
        wire!.destroy(err);
        reject(err);
      } else resolve(wire!);
    };
    const onConnect = (): void => {
      if (addr.transport === 'tcp') socket.setNoDelay(true);
      done();
    };
    const onClose = (): void => done(wire!.failure);
    const onAbort = (): void => done(abortError(uri, 'connect', signal!.reason));
    const timer = setTimeout(() => done(timeoutError(uri, 'connect', timeoutMs)), timeoutMs);
    socket.once('connect', onConnect);
    socket.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Exact-length reads for the handshake. Keeps what the server sent (bounded: the socket is paused
 * above a high-water mark) and fails every read once the socket has failed.
 */
export class WireReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;

  constructor(private readonly wire: Wire) {
    wire.setSink((d, n) => this.push(d.subarray(0, n)));
    wire.socket.on('close', () => this.settle());
  }

  private push(d: Buffer): boolean {
    this.chunks.push(Buffer.from(d));
    this.have += d.length;
    this.settle();
    return this.have < HANDSHAKE_HIGH_WATER;
  }

  private take(n: number): Buffer {
    const out = this.chunks.length === 1 && this.chunks[0]!.length === n ? this.chunks[0]! : Buffer.concat(this.chunks, this.have);
    const head = out.subarray(0, n);
    const rest = out.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.have = rest.length;
    if (this.wire.socket.isPaused() && this.have < HANDSHAKE_HIGH_WATER) this.wire.socket.resume();
    return head;
  }

  private settle(): void {
    const w = this.want;
    if (!w) return;
    if (this.have >= w.n) {
      this.want = undefined;
      w.resolve(this.take(w.n));
    } else if (this.wire.closed || this.wire.failure) {
      this.want = undefined;
      w.reject(this.wire.failure ?? connectionLost(this.wire.uri, 'the server closed the connection'));
    }
  }

  read(n: number): Promise<Buffer> {
    if (this.want) throw new Error('WireReader: one read at a time');
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.settle();
    });
  }

  /** Bytes received beyond what was read (the start of the transmission phase). */
  leftover(): Buffer[] {
    const l = this.chunks;
    this.chunks = [];
    this.have = 0;
    return l;
  }
}
