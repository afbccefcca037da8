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

const NO_OPTIONS = Object.freeze({});

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
  read(offset: number, into: Uint8Array, opts: RequestOptions = NO_OPTIONS): Promise<void> {
    return this.issue(P.CMD.READ, 0, offset, into.length, this.info.blockSize.maximum, opts, into, undefined);
  }

  /** Write `data` at `offset`. The client reads `data` until the promise settles. */
  write(offset: number, data: Uint8Array, opts: WriteOptions = NO_OPTIONS): Promise<void> {
    return this.issue(P.CMD.WRITE, opts.fua ? P.CMD_FLAG_FUA : 0, offset, data.length, this.info.blockSize.maximum, opts, undefined, data);
  }

  flush(opts: RequestOptions = NO_OPTIONS): Promise<void> {
    return this.issue(P.CMD.FLUSH, 0, 0, 0, 0, opts, undefined, undefined);
  }

  trim(offset: number, length: number, opts: WriteOptions = NO_OPTIONS): Promise<void> {
    return this.issue(P.CMD.TRIM, opts.fua ? P.CMD_FLAG_FUA : 0, offset, length, MAX_RANGE, opts, undefined, undefined);
  }

  writeZeroes(offset: number, length: number, opts: ZeroOptions = NO_OPTIONS): Promise<void> {
    const flags = (opts.fua ? P.CMD_FLAG_FUA : 0) | (opts.noHole ? P.CMD_FLAG_NO_HOLE : 0);
    return this.issue(P.CMD.WRITE_ZEROES, flags, offset, length, MAX_RANGE, opts, undefined, undefined);
  }

  /**
   * Checks what the export allows and the range, then sends one request per `max` bytes (reads
   * into `into`, writes from `data`); settles once every part has (first error wins). Refusals
   * are rejections, and nothing is sent for them.
   */
  private issue(
    type: number,
    flags: number,
    offset: number,
    length: number,
    max: number,
    opts: RequestOptions,
    into: Uint8Array | undefined,
    data: Uint8Array | undefined,
  ): Promise<void> {
    const refusal = this.refuse(type, flags, offset, length);
    if (refusal) return Promise.reject(refusal);
    if (type === P.CMD.FLUSH) return this.pipe.submit(type, flags, 0, 0, undefined, undefined, opts);
    if (length === 0) return Promise.resolve();
    if (length <= max) return this.pipe.submit(type, flags, offset, length, into, data, opts);
    const part = (o: number, n: number): Promise<void> =>
      this.pipe.submit(type, flags, o, n, into?.subarray(o - offset, o - offset + n), data?.subarray(o - offset, o - offset + n), opts);
    const parts: Promise<void>[] = [];
    for (let o = offset; o < offset + length; o += max) parts.push(part(o, Math.min(max, offset + length - o)));
    // Wait for every part: none may still write into the caller's buffer after we return.
    return Promise.allSettled(parts).then((results) => {
      const bad = results.find((r) => r.status === 'rejected');
      if (bad) throw (bad as PromiseRejectedResult).reason;
    });
  }

  /** Why the request may not be sent: read-only export, command not offered, bad range; or undefined. */
  private refuse(type: number, flags: number, offset: number, length: number): KataError | undefined {
    const cmd = P.COMMAND_NAMES[type]!;
    if (type !== P.CMD.READ && type !== P.CMD.FLUSH && this.has(P.TF.READ_ONLY)) {
      return new KataError('E_NBD_READ_ONLY', `NBD export ${this.uri} is read-only: ${cmd} refused (nothing was sent)`, {
        uri: this.uri,
        command: cmd,
      });
    }
    const need = NEEDS[type];
    if (need && !this.has(need[0])) return this.unsupported(cmd, need[1]);
    if (flags & P.CMD_FLAG_FUA && !this.has(P.TF.SEND_FUA)) return this.unsupported(`${cmd} with FUA`, 'NBD_FLAG_SEND_FUA');
    const min = this.info.blockSize.minimum;
    const where = { uri: this.uri, offset, length };
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.info.size) {
      return new KataError(
        'E_INVALID_ARGUMENT',
        `NBD export ${this.uri}: ${cmd} of ${length} bytes at ${offset} is outside the export (size ${this.info.size})`,
        where,
      );
    }
    if (offset % min !== 0 || length % min !== 0) {
      return new KataError(
        'E_INVALID_ARGUMENT',
        `NBD export ${this.uri}: ${cmd} at ${offset} of ${length} bytes is not aligned to the minimum block size ${min}`,
        where,
      );
    }
    return undefined;
  }

  private unsupported(cmd: string, flag: string): KataError {
    return new KataError('E_UNSUPPORTED', `NBD export ${this.uri}: the server does not offer ${cmd} (no ${flag})`, {
      uri: this.uri,
      command: cmd,
    });
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
