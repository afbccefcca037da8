/**
 * An open NBD export: READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (NO_HOLE) and a clean
 * NBD_CMD_DISC. Requests are pipelined (pipeline.ts); reads land in the caller's buffer; reads and
 * writes longer than the export's maximum payload are split. Writes to a read-only export and
 * commands the server did not advertise are refused before anything is sent; ranges outside the
 * export or not aligned to its minimum block size too. Each request has a deadline: when it
 * passes, the connection is closed (as the kernel client does). Connection loss fails every
 * pending request at once.
 */
import { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { connectionLost, timeoutError } from './errors.js';
import type { ExportInfo } from './export-info.js';
import { Pipeline, type RequestOptions } from './pipeline.js';
import * as P from './protocol.js';
import type { Wire } from './wire.js';

export interface WriteOptions extends RequestOptions {
  /** NBD_CMD_FLAG_FUA: the reply comes once the data is durable (needs NBD_FLAG_SEND_FUA). */
  fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** NBD_CMD_FLAG_NO_HOLE: the zeroed range stays allocated. */
  noHole?: boolean;
}

/** Non-payload commands (TRIM, WRITE_ZEROES) are split below the 32-bit length field. */
const MAX_RANGE = 2 ** 31;

/** Commands and the transmission flag the server must have set for them. */
const NEEDS: Record<number, [number, string]> = {
  [P.CMD.FLUSH]: [P.TF.SEND_FLUSH, 'NBD_FLAG_SEND_FLUSH'],
  [P.CMD.TRIM]: [P.TF.SEND_TRIM, 'NBD_FLAG_SEND_TRIM'],
  [P.CMD.WRITE_ZEROES]: [P.TF.SEND_WRITE_ZEROES, 'NBD_FLAG_SEND_WRITE_ZEROES'],
};

export class NbdClient {
  readonly info: ExportInfo;
  readonly structured: boolean;
  /** Resolves when the connection has ended: undefined after close(), else the reason. */
  readonly closed: Promise<KataError | undefined>;
  private readonly pipe: Pipeline;

  constructor(
    private readonly wire: Wire,
    info: ExportInfo,
    leftover: Buffer[],
    opts: { maxInFlight: number; requestTimeoutMs: number; log?: Logger },
  ) {
    this.info = info;
    this.structured = info.structuredReplies;
    this.pipe = new Pipeline(wire, info.structuredReplies, leftover, opts);
    // The server is going down: it MUST get a soft disconnect once the rest is answered.
    this.pipe.onShutdown = () => void this.close();
    this.closed = wire.whenClosed().then(() => {
      const p = this.pipe;
      const why = p.failure ?? (p.refusal ? undefined : (wire.failure ?? connectionLost(this.uri, 'the server closed the connection')));
      p.failure ??= why ?? p.refusal;
      p.failAll(p.failure!);
      return why;
    });
  }

  get uri(): string {
    return this.wire.uri;
  }

  /** Requests sent and not yet answered, plus those waiting for a slot. */
  get pending(): number {
    return this.pipe.pending;
  }

  private has(flag: number): boolean {
    return (this.info.flags & flag) !== 0;
  }

  /** Fill `into` with the export's bytes at `offset`. */
  read(offset: number, into: Uint8Array, opts: RequestOptions = {}): Promise<void> {
    return this.split(P.CMD.READ, offset, into.length, this.info.blockSize.maximum, (o, n) =>
      this.pipe.submit(P.CMD.READ, 0, o, n, into.subarray(o - offset, o - offset + n), undefined, opts),
    );
  }

  /** Write `data` at `offset`. The client reads `data` until the promise settles. */
  async write(offset: number, data: Uint8Array, opts: WriteOptions = {}): Promise<void> {
    const flags = this.guard(P.CMD.WRITE, opts);
    return this.split(P.CMD.WRITE, offset, data.length, this.info.blockSize.maximum, (o, n) =>
      this.pipe.submit(P.CMD.WRITE, flags, o, n, undefined, data.subarray(o - offset, o - offset + n), opts),
    );
  }

  async flush(opts: RequestOptions = {}): Promise<void> {
    this.guard(P.CMD.FLUSH, {});
    return this.pipe.submit(P.CMD.FLUSH, 0, 0, 0, undefined, undefined, opts);
  }

  async trim(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    const flags = this.guard(P.CMD.TRIM, opts);
    return this.split(P.CMD.TRIM, offset, length, MAX_RANGE, (o, n) =>
      this.pipe.submit(P.CMD.TRIM, flags, o, n, undefined, undefined, opts),
    );
  }

  async writeZeroes(offset: number, length: number, opts: ZeroOptions = {}): Promise<void> {
    const flags = this.guard(P.CMD.WRITE_ZEROES, opts) | (opts.noHole ? P.CMD_FLAG_NO_HOLE : 0);
    return this.split(P.CMD.WRITE_ZEROES, offset, length, MAX_RANGE, (o, n) =>
      this.pipe.submit(P.CMD.WRITE_ZEROES, flags, o, n, undefined, undefined, opts),
    );
  }

  /** Refuses what the export does not allow before anything is sent; returns the FUA flag. */
  private guard(type: number, opts: WriteOptions): number {
    const cmd = P.commandName(type);
    if (type !== P.CMD.FLUSH && this.has(P.TF.READ_ONLY)) {
      throw new KataError('E_NBD_READ_ONLY', `NBD export ${this.uri} is read-only: ${cmd} refused (nothing was sent)`, {
        uri: this.uri,
        command: cmd,
      });
    }
    const need = NEEDS[type];
    if (need && !this.has(need[0])) throw this.unsupported(cmd, need[1]);
    if (!opts.fua) return 0;
    if (!this.has(P.TF.SEND_FUA)) throw this.unsupported(`${cmd} with FUA`, 'NBD_FLAG_SEND_FUA');
    return P.CMD_FLAG_FUA;
  }

  private unsupported(cmd: string, flag: string): KataError {
    return new KataError('E_UNSUPPORTED', `NBD export ${this.uri}: the server does not offer ${cmd} (no ${flag})`, {
      uri: this.uri,
      command: cmd,
    });
  }

  /** Checks the range, then issues one request per `max` bytes; settles once all have (first error wins). */
  private async split(
    type: number,
    offset: number,
    length: number,
    max: number,
    issue: (o: number, n: number) => Promise<void>,
  ): Promise<void> {
    const cmd = P.commandName(type);
    const min = this.info.blockSize.minimum;
    const where = { uri: this.uri, offset, length };
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.info.size) {
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `NBD export ${this.uri}: ${cmd} of ${length} bytes at ${offset} is outside the export (size ${this.info.size})`,
        where,
      );
    }
    if (offset % min !== 0 || length % min !== 0) {
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `NBD export ${this.uri}: ${cmd} at ${offset} of ${length} bytes is not aligned to the minimum block size ${min}`,
        where,
      );
    }
    if (length === 0) return;
    if (length <= max) return issue(offset, length);
    const parts: Promise<void>[] = [];
    for (let o = offset; o < offset + length; o += max) parts.push(issue(o, Math.min(max, offset + length - o)));
    // Wait for every part: none may still write into the caller's buffer after we return.
    const results = await Promise.allSettled(parts);
    const bad = results.find((r) => r.status === 'rejected');
    if (bad) throw (bad as PromiseRejectedResult).reason;
  }

  /**
   * Soft disconnect: refuse new requests, wait (at most `timeoutMs`, default 30 s) for those
   * pending, send NBD_CMD_DISC and close. Harmless when repeated or after a failure.
   */
  async close(opts: { timeoutMs?: number } = {}): Promise<void> {
    const p = this.pipe;
    p.refusal ??= connectionLost(this.uri, 'the client was closed');
    if (!this.wire.closed && !p.failure) {
      const ms = opts.timeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      const idle = await Promise.race([p.idle().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
      clearTimeout(timer);
      if (!idle) p.fail(timeoutError(this.uri, 'close (waiting for pending requests)', ms));
      else if (!this.wire.closed && !p.failure) {
        p.writeRequest(P.CMD.DISC, 0, 0, 0, 0);
        this.wire.socket.end();
        const t = setTimeout(() => this.wire.socket.destroy(), 2000);
        await this.wire.whenClosed();
        clearTimeout(t);
      }
    }
    await this.closed;
  }

  /** Hard disconnect now; pending requests fail with E_NBD. */
  destroy(): void {
    this.pipe.refusal ??= connectionLost(this.uri, 'the client was destroyed');
    this.pipe.fail(this.pipe.refusal);
  }
}
