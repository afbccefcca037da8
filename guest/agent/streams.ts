/**
 * A process's stdio as the agent serves it to ReadStdout/ReadStderr/WriteStdin/CloseStdin.
 *
 * OutputStream buffers what the process writes, up to a bound: above it the source is paused, so
 * the pipe fills and the process blocks (backpressure, nothing dropped, nothing unbounded). Reads
 * take up to `max` bytes as soon as any are there, in arrival order; an empty buffer is EOF.
 *
 * After the process exited, `abandonWhenIdle` ends a stream whose pipe stays open (a background
 * grandchild holds it) once nothing arrived for a while: what was buffered is still served, then
 * EOF (Kata's agent drains for 500 ms after the exit; kata-containers#3913/#13695).
 *
 * InputStream forwards writes in order; close() ends the pipe after every earlier write reached it.
 */
import type { Readable, Writable } from 'node:stream';
import { AgentError } from './protocol.js';

const DEFAULT_HIGH_WATER = 8 * 1024 * 1024;

interface Waiter {
  max: number;
  resolve: (b: Buffer) => void;
}

export class OutputStream {
  private chunks: Buffer[] = [];
  private size = 0;
  private source: Readable | undefined;
  private paused = false;
  private eof = false;
  private readonly waiters: Waiter[] = [];
  private lastData = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly endedP: Promise<void>;
  private resolveEnded!: () => void;

  constructor(private readonly highWater = DEFAULT_HIGH_WATER) {
    this.endedP = new Promise((r) => {
      this.resolveEnded = r;
    });
  }

  /** A stream that is empty from the start (stderr of a terminal process). */
  static empty(): OutputStream {
    const s = new OutputStream();
    s.finish();
    return s;
  }

  attach(src: Readable): void {
    this.source = src;
    src.on('data', (d: Buffer) => this.push(d));
    src.on('end', () => this.finish());
    src.on('close', () => this.finish());
    src.on('error', () => this.finish());
  }

  /** Resolves once the source reached EOF (or was abandoned): everything is in the buffer. */
  get ended(): Promise<void> {
    return this.endedP;
  }

  get isEnded(): boolean {
    return this.eof;
  }

  /** True while the source is held back because the buffer is full (the host is the bottleneck). */
  get isBackpressured(): boolean {
    return this.paused;
  }

  /** Milliseconds since the source last delivered data. */
  get idleMs(): number {
    return Date.now() - this.lastData;
  }

  get buffered(): number {
    return this.size;
  }

  private push(d: Buffer): void {
    if (this.eof) return;
    this.lastData = Date.now();
    this.chunks.push(d);
    this.size += d.length;
    this.serve();
    if (this.size >= this.highWater && !this.paused && this.source) {
      this.paused = true;
      this.source.pause();
    }
  }

  private finish(): void {
    if (this.eof) return;
    this.eof = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.resolveEnded();
    this.serve();
  }

  private take(max: number): Buffer {
    const out: Buffer[] = [];
    let n = 0;
    while (n < max && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, max - n);
      out.push(k === c.length ? c : c.subarray(0, k));
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
      n += k;
    }
    this.size -= n;
    if (this.paused && this.size < this.highWater / 2 && this.source) {
      this.paused = false;
      this.source.resume();
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out, n);
  }

  private serve(): void {
    while (this.waiters.length > 0 && (this.size > 0 || this.eof)) {
      const w = this.waiters.shift()!;
      w.resolve(this.size > 0 ? this.take(w.max) : Buffer.alloc(0));
    }
  }

  /** Up to max bytes, waiting until there are some; empty at EOF. Concurrent reads are served in order. */
  read(max: number): Promise<Buffer> {
    return new Promise((resolve) => {
      this.waiters.push({ max, resolve });
      this.serve();
    });
  }

  /** Everything buffered now, as text (error messages of a process that failed to start). */
  drainText(): string {
    return this.size > 0 ? this.take(this.size).toString('utf8') : '';
  }

  /** After the process exited: end the stream once no data came for idleMs (unless the host is the one behind). */
  abandonWhenIdle(idleMs: number): void {
    if (this.eof || this.idleTimer) return;
    const check = (): void => {
      if (!this.eof && !this.paused && this.idleMs >= idleMs) this.abandon();
    };
    this.idleTimer = setInterval(check, Math.max(20, Math.floor(idleMs / 4)));
    this.idleTimer.unref();
    check();
  }

  /** Stop reading the source now; buffered data is still served, then EOF. */
  abandon(): void {
    this.source?.destroy();
    this.finish();
  }
}

export class InputStream {
  private sink: Writable | undefined;
  private closing: Promise<void> | undefined;
  private failed: Error | undefined;

  attach(sink: Writable): void {
    this.sink = sink;
    sink.on('error', (e) => {
      this.failed = e;
    });
  }

  write(data: Buffer): Promise<number> {
    const sink = this.sink;
    if (!sink || this.closing) return Promise.reject(new AgentError('E_FAILED_PRECONDITION', 'stdin is closed'));
    if (this.failed || sink.destroyed)
      return Promise.reject(new AgentError('E_FAILED_PRECONDITION', `stdin is gone: ${this.failed?.message ?? 'the process closed it'}`));
    if (data.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      sink.write(data, (err) => {
        if (err) reject(new AgentError('E_FAILED_PRECONDITION', `stdin is gone: ${err.message}`));
        else resolve(data.length);
      });
    });
  }

  /** End stdin after what was written before; idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const sink = this.sink;
    this.closing = new Promise<void>((resolve) => {
      if (!sink || sink.destroyed) {
        resolve();
        return;
      }
      const done = (): void => {
        sink.destroy();
        resolve();
      };
      sink.once('error', done);
      sink.end(done);
    });
    return this.closing;
  }

  /** Drop the pipe without waiting (the process is being removed). */
  destroy(): void {
    this.closing ??= Promise.resolve();
    this.sink?.destroy();
  }
}
