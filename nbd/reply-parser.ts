/**
 * The transmission-phase reply stream: simple replies and structured reply chunks, parsed
 * incrementally from whatever the socket delivers. Read data goes straight into the caller's
 * buffer (or is skipped for an abandoned request); only headers and error payloads are copied,
 * into buffers whose size is checked first. Every length is checked against the request it
 * answers: a chunk outside the request, overlapping an earlier one, or a reply that ends without
 * covering the request is a protocol error, and so is an unknown cookie or magic.
 */
import * as P from './protocol.js';

export interface Pending {
  cookie: number;
  type: number;
  offset: number;
  length: number;
  /** READ: where the data goes (exactly `length` bytes). */
  target: Uint8Array | undefined;
  /** The caller gave up (abort): the reply is still parsed, its data dropped. */
  abandoned: boolean;
  /** The first error the server reported for this request. */
  error: { errno: number; message?: string; offset?: number } | undefined;
  /** READ: bytes covered by content chunks, and the covered ranges as [start, end) pairs. */
  covered: number;
  ranges: number[] | undefined;
}

export interface ParserHost {
  readonly structured: boolean;
  lookup(cookie: number): Pending | undefined;
  /** The request's reply is complete. */
  settle(p: Pending): void;
  /** The stream is broken; nothing more will be parsed. */
  violation(what: string, details?: Record<string, unknown>): void;
  /**
   * Whether the next reply is likely to carry a large read payload (one is in flight, or nothing
   * is: the next reply answers a request not yet made), so that its header is best read alone.
   */
  readonly expectBigRead: boolean;
}

/** Error chunks carry a message of at most 4096 bytes and an optional offset. */
const MAX_ERROR_PAYLOAD = 6 + P.MAX_STRING + 8 + 64;

/** Payloads at least this large are read straight into the caller's buffer. */
export const DIRECT_MIN = 16 * 1024;

/** Parser states. */
const S = { Header: 0, SimpleData: 1, ChunkPrefix: 2, ChunkData: 3, Broken: 4 } as const;

export class ReplyParser {
  private state: number = S.Header;
  private readonly hdr = Buffer.alloc(P.STRUCTURED_HEADER_SIZE);
  /** A structured chunk header plus the offset of a data chunk. */
  private readonly small = Buffer.alloc(P.STRUCTURED_HEADER_SIZE + 8);
  private hdrHave = 0;
  private hdrNeed = 4;
  private p: Pending | undefined;
  private chunkFlags = 0;
  private chunkType = 0;
  private chunkLen = 0;
  private prefix: Buffer = Buffer.alloc(0);
  private prefixHave = 0;
  /** Data state: where in p.target the next byte goes, and how many are left. */
  private pos = 0;
  private left = 0;

  constructor(private readonly host: ParserHost) {}

  private broken(what: string, details?: Record<string, unknown>): void {
    this.state = S.Broken;
    this.host.violation(what, details);
  }

  /**
   * Where the next socket read should go, if not the connection's big shared buffer: the
   * caller's buffer for the rest of a large payload now arriving; or, between replies when a
   * large read may come next, just enough for a chunk header and its offset, so that the payload
   * after it lands in the caller's buffer too rather than being copied there from the shared one.
   * (Node asks for the next buffer right after each read, before the caller can issue its next
   * request: an idle connection counts as expecting a large read.)
   */
  directTarget(): Uint8Array | undefined {
    if (this.state === S.Header) return this.hdrHave === 0 && this.host.expectBigRead ? this.small : undefined;
    if ((this.state !== S.SimpleData && this.state !== S.ChunkData) || this.left < DIRECT_MIN || this.p!.abandoned) return undefined;
    return this.p!.target!.subarray(this.pos, this.pos + this.left);
  }

  /** Parses d[0, n) (n defaults to all of d). */
  push(d: Buffer, n = d.length): void {
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case S.Header: {
          const k = Math.min(this.hdrNeed - this.hdrHave, n - i);
          d.copy(this.hdr, this.hdrHave, i, i + k);
          this.hdrHave += k;
          i += k;
          if (this.hdrHave < this.hdrNeed) break;
          if (this.hdrNeed === 4) {
            const magic = this.hdr.readUInt32BE(0);
            if (magic === P.SIMPLE_REPLY_MAGIC) this.hdrNeed = P.SIMPLE_REPLY_SIZE;
            else if (magic === P.STRUCTURED_REPLY_MAGIC) this.hdrNeed = P.STRUCTURED_HEADER_SIZE;
            else {
              this.broken(`bad reply magic 0x${magic.toString(16)}`);
              return;
            }
            break;
          }
          if (this.hdrNeed === P.SIMPLE_REPLY_SIZE) this.simpleHeader();
          else this.chunkHeader();
          break;
        }
        case S.SimpleData:
        case S.ChunkData: {
          const k = Math.min(this.left, n - i);
          const p = this.p!;
          const t = p.target!;
          // Data read by the kernel straight into place (directTarget) needs no copy.
          const inPlace = d.buffer === t.buffer && d.byteOffset + i === t.byteOffset + this.pos;
          if (!p.abandoned && !inPlace) d.copy(t, this.pos, i, i + k);
          this.pos += k;
          this.left -= k;
          i += k;
          if (this.left === 0) this.endOfPayload();
          break;
        }
        case S.ChunkPrefix: {
          const k = Math.min(this.prefix.length - this.prefixHave, n - i);
          d.copy(this.prefix, this.prefixHave, i, i + k);
          this.prefixHave += k;
          i += k;
          if (this.prefixHave === this.prefix.length) this.prefixDone();
          break;
        }
        case S.Broken:
          return;
      }
    }
  }

  private cookie(): Pending | undefined {
    const hi = this.hdr.readUInt32BE(8);
    const p = hi === 0 ? this.host.lookup(this.hdr.readUInt32BE(12)) : undefined;
    if (!p) this.broken(`reply with unknown cookie 0x${this.hdr.toString('hex', 8, 16)}`);
    return p;
  }

  private nextHeader(): void {
    this.state = S.Header;
    this.hdrHave = 0;
    this.hdrNeed = 4;
  }

  private simpleHeader(): void {
    const errno = this.hdr.readUInt32BE(4);
    const p = this.cookie();
    if (!p) return;
    this.p = p;
    if (errno !== 0) p.error ??= { errno };
    if (errno !== 0 || p.type !== P.CMD.READ) this.finish(p);
    else if (this.host.structured) this.broken('simple reply with data to NBD_CMD_READ after structured replies were negotiated');
    else {
      this.state = S.SimpleData;
      this.pos = 0;
      this.left = p.length;
    }
  }

  private chunkHeader(): void {
    if (!this.host.structured) {
      this.broken('structured reply chunk although structured replies were not negotiated');
      return;
    }
    const p = this.cookie();
    if (!p) return;
    this.p = p;
    this.chunkFlags = this.hdr.readUInt16BE(4);
    const type = (this.chunkType = this.hdr.readUInt16BE(6));
    const len = (this.chunkLen = this.hdr.readUInt32BE(16));
    const problem = chunkHeaderProblem(p, this.chunkFlags, type, len);
    if (problem) this.broken(problem, { cookie: p.cookie, chunkType: type, length: len, requestLength: p.length });
    else if (type === P.REPLY_TYPE.NONE) this.chunkDone();
    else this.expectPrefix(type === P.REPLY_TYPE.OFFSET_DATA ? 8 : type === P.REPLY_TYPE.OFFSET_HOLE ? 12 : len);
  }

  private expectPrefix(n: number): void {
    if (this.prefix.length !== n) this.prefix = Buffer.alloc(n);
    this.prefixHave = 0;
    this.state = S.ChunkPrefix;
  }

  /** The fixed part of a chunk is in: claim its range (content) or record its error. */
  private prefixDone(): void {
    const p = this.p!;
    const b = this.prefix;
    const type = this.chunkType;
    if (type === P.REPLY_TYPE.OFFSET_DATA || type === P.REPLY_TYPE.OFFSET_HOLE) {
      const start = u64(b, 0);
      const isData = type === P.REPLY_TYPE.OFFSET_DATA;
      const len = isData ? this.chunkLen - 8 : b.readUInt32BE(8);
      const problem = claimProblem(p, start, len, isData ? 'NBD_REPLY_TYPE_OFFSET_DATA' : 'NBD_REPLY_TYPE_OFFSET_HOLE');
      if (problem) this.broken(problem, { cookie: p.cookie });
      else if (isData) {
        this.state = S.ChunkData;
        this.pos = start - p.offset;
        this.left = len;
      } else {
        if (!p.abandoned) p.target!.fill(0, start - p.offset, start - p.offset + len);
        this.chunkDone();
      }
      return;
    }
    const e = parseErrorChunk(p, type, b);
    if (typeof e === 'string') this.broken(e, { cookie: p.cookie });
    else {
      p.error ??= e;
      this.chunkDone();
    }
  }

  private endOfPayload(): void {
    if (this.state !== S.SimpleData) this.chunkDone();
    else {
      this.p!.covered = this.p!.length;
      this.finish(this.p!);
    }
  }

  private chunkDone(): void {
    const p = this.p!;
    if (!(this.chunkFlags & P.REPLY_FLAG_DONE)) this.nextHeader();
    else if (!p.error && p.type === P.CMD.READ && p.covered !== p.length) {
      this.broken(`reply to a ${p.length}-byte read ended after ${p.covered} bytes without an error`, { cookie: p.cookie });
    } else this.finish(p);
  }

  private finish(p: Pending): void {
    this.nextHeader();
    this.p = undefined;
    this.host.settle(p);
  }
}

/** What is wrong with a chunk header for request p, if anything (checked before any payload is read). */
function chunkHeaderProblem(p: Pending, flags: number, type: number, len: number): string | undefined {
  const isRead = p.type === P.CMD.READ;
  switch (type) {
    case P.REPLY_TYPE.NONE:
      if (len !== 0) return `NBD_REPLY_TYPE_NONE with a ${len}-byte payload`;
      return flags & P.REPLY_FLAG_DONE ? undefined : 'NBD_REPLY_TYPE_NONE without NBD_REPLY_FLAG_DONE';
    case P.REPLY_TYPE.OFFSET_DATA:
      if (!isRead) return `NBD_REPLY_TYPE_OFFSET_DATA in reply to ${P.commandName(p.type)}`;
      return len < 9 || len - 8 > p.length ? `NBD_REPLY_TYPE_OFFSET_DATA of ${len} bytes for a ${p.length}-byte read` : undefined;
    case P.REPLY_TYPE.OFFSET_HOLE:
      if (!isRead) return `NBD_REPLY_TYPE_OFFSET_HOLE in reply to ${P.commandName(p.type)}`;
      return len !== 12 ? `NBD_REPLY_TYPE_OFFSET_HOLE of ${len} bytes (must be 12)` : undefined;
  }
  if (!P.isErrorChunk(type)) return `unexpected structured reply chunk type ${type}`;
  const min = type === P.REPLY_TYPE.ERROR_OFFSET ? 14 : 6;
  return len < min || len > MAX_ERROR_PAYLOAD ? `error chunk of ${len} bytes (allowed ${min}..${MAX_ERROR_PAYLOAD})` : undefined;
}

/** Claims [start, start+len) of p for a content chunk, or says why it cannot (outside, overlapping, empty). */
function claimProblem(p: Pending, start: number, len: number, what: string): string | undefined {
  const end = start + len;
  if (len === 0) return `${what} of size 0`;
  if (start < p.offset || end > p.offset + p.length)
    return `${what} [${start}, ${end}) outside the request [${p.offset}, ${p.offset + p.length})`;
  const r = (p.ranges ??= []);
  for (let j = 0; j < r.length; j += 2) {
    if (start < r[j + 1]! && r[j]! < end) return `${what} [${start}, ${end}) overlaps an earlier chunk [${r[j]}, ${r[j + 1]})`;
  }
  r.push(start, end);
  p.covered += len;
  return undefined;
}

/** An error chunk's payload (error, message length, message[, offset]), or what is wrong with it. */
function parseErrorChunk(p: Pending, type: number, b: Buffer): NonNullable<Pending['error']> | string {
  const errno = b.readUInt32BE(0);
  const msgLen = b.readUInt16BE(4);
  const tail = type === P.REPLY_TYPE.ERROR_OFFSET ? 8 : 0;
  if (errno === 0) return 'error chunk with error value 0';
  if (6 + msgLen + tail > b.length) return `error chunk message of ${msgLen} bytes overruns its ${b.length}-byte chunk`;
  const message = b.toString('utf8', 6, 6 + msgLen);
  if (!tail) return { errno, ...(message ? { message } : {}) };
  const offset = u64(b, 6 + msgLen);
  if (offset < p.offset || offset >= p.offset + Math.max(p.length, 1))
    return `NBD_REPLY_TYPE_ERROR_OFFSET at ${offset} outside the request`;
  return { errno, offset, ...(message ? { message } : {}) };
}

/** A 64-bit big-endian offset as a number (exact below 2^53; larger ones fail the range checks). */
function u64(b: Buffer, at: number): number {
  return b.readUInt32BE(at) * 2 ** 32 + b.readUInt32BE(at + 4);
}
