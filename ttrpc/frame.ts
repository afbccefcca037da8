/**
 * ttRPC framing (containerd/ttrpc PROTOCOL.md, v1.1.1 channel.go): a 10-byte header
 * (uint32 BE data length, uint32 BE stream id, uint8 type, uint8 flags) and the data, at most
 * 4 MiB. Hand-written, like the rest of ttrpc/: there is no maintained ttRPC package for Node.
 *
 * FrameReader parses a byte stream cut anywhere (a frame split over many chunks, many frames in
 * one chunk). A frame longer than the limit is not buffered: its bytes are dropped as they arrive
 * and, once all are gone, the owner is told (the server answers RESOURCE_EXHAUSTED on that
 * stream, as Go's does); the stream stays in sync and the connection usable.
 */
import type { Socket } from 'node:net';

export const HEADER_LENGTH = 10;
/** `messageLengthMax = 4 << 20` in Go's channel.go. */
export const MESSAGE_LENGTH_MAX = 4 << 20;

export const MessageType = { REQUEST: 0x01, RESPONSE: 0x02, DATA: 0x03 } as const;

export interface FrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export interface Frame extends FrameHeader {
  data: Buffer;
}

export interface FrameSink {
  frame(frame: Frame): void;
  /** A frame over the limit was read and dropped; its header says which stream it was on. */
  oversized(header: FrameHeader): void;
}

export function encodeHeader(h: FrameHeader, into: Buffer = Buffer.allocUnsafe(HEADER_LENGTH)): Buffer {
  into.writeUInt32BE(h.length, 0);
  into.writeUInt32BE(h.streamId, 4);
  into.writeUInt8(h.type, 8);
  into.writeUInt8(h.flags, 9);
  return into;
}

export function decodeHeader(b: Buffer): FrameHeader {
  return { length: b.readUInt32BE(0), streamId: b.readUInt32BE(4), type: b.readUInt8(8), flags: b.readUInt8(9) };
}

/** Frames up to this size are copied into one buffer with their header; larger ones go as two writes, corked. */
const COPY_LIMIT = 64 * 1024;

/**
 * Write one whole frame. Node runs one write call at a time and queues writes in order, so a
 * frame written by one call (or by two writes inside one cork) is never interleaved with
 * another's, whatever the number of concurrent senders. The socket stays corked until the
 * current tick's callbacks have run, so the frames that many concurrent calls write at once go
 * out in one writev instead of a syscall each.
 */
export function writeFrame(socket: Socket, streamId: number, type: number, data: Uint8Array, flags = 0): void {
  if (socket.writableCorked === 0) {
    socket.cork();
    process.nextTick(() => socket.uncork());
  }
  const h = { length: data.byteLength, streamId, type, flags };
  if (data.byteLength <= COPY_LIMIT) {
    const buf = Buffer.allocUnsafe(HEADER_LENGTH + data.byteLength);
    encodeHeader(h, buf);
    buf.set(data, HEADER_LENGTH);
    socket.write(buf);
    return;
  }
  socket.write(encodeHeader(h));
  socket.write(data);
}

export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;
  /** Bytes of an oversized frame still to drop. */
  private discarding = 0;

  constructor(
    private readonly sink: FrameSink,
    private readonly max = MESSAGE_LENGTH_MAX,
  ) {}

  /** Bytes held waiting for the rest of a frame (never more than one frame's worth plus a chunk). */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.header === undefined) {
        if (this.buffered < HEADER_LENGTH) return;
        this.header = decodeHeader(this.take(HEADER_LENGTH));
        this.discarding = this.header.length > this.max ? this.header.length : 0;
      }
      const h = this.header;
      if (h.length > this.max) {
        this.discarding -= this.drop(this.discarding);
        if (this.discarding > 0) return;
        this.header = undefined;
        this.sink.oversized(h);
        continue;
      }
      if (this.buffered < h.length) return;
      const data = this.take(h.length);
      this.header = undefined;
      this.sink.frame({ ...h, data });
    }
  }

  /** The next n buffered bytes (n <= buffered), without a copy when they lie in one chunk. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      this.buffered -= n;
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    this.consume(n, (c, off) => c.copy(out, off));
    return out;
  }

  /** Drop up to n buffered bytes; how many were dropped. */
  private drop(n: number): number {
    return this.consume(Math.min(n, this.buffered), () => {});
  }

  /** Hand the next n bytes (n <= buffered) to `use` piece by piece, then remove them: one splice, however many chunks. */
  private consume(n: number, use: (piece: Buffer, offset: number) => void): number {
    let off = 0;
    let i = 0;
    while (off < n) {
      const c = this.chunks[i]!;
      const k = Math.min(c.length, n - off);
      use(k === c.length ? c : c.subarray(0, k), off);
      off += k;
      if (k === c.length) i++;
      else this.chunks[i] = c.subarray(k);
    }
    this.chunks.splice(0, i);
    this.buffered -= n;
    return n;
  }
}
