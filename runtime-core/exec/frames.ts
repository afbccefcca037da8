/**
 * The exec stream between the CLI and the supervisor: after an HTTP Upgrade (`GET /Exec`,
 * `Upgrade: kata-exec/1`) on the management socket, both sides exchange frames of
 *
 *   1 byte type | 4 bytes payload length (big-endian) | payload
 *
 * Data frames carry raw bytes (binary-safe, no encoding); control frames carry one JSON object.
 * Hand-written: the format is five lines of framing, and a streaming upgrade on a unix socket is
 * not something an RPC library on npm offers over plain node:http.
 */
import { KataError } from '../../host/errors.js';

export const EXEC_UPGRADE = 'kata-exec/1';

/** Client to supervisor. */
export const START = 0x01;
export const STDIN = 0x02;
export const STDIN_EOF = 0x03;
export const RESIZE = 0x04;
export const SIGNAL = 0x05;
/** Supervisor to client. */
export const STARTED = 0x11;
export const STDOUT = 0x12;
export const STDERR = 0x13;
export const EXIT = 0x14;
export const ERROR = 0x15;

/** Largest payload a frame may carry (data is sent in chunks well below it). */
const MAX_PAYLOAD = 8 * 1024 * 1024;
const HEADER = 5;

export function frame(type: number, payload: Buffer | Record<string, unknown> = Buffer.alloc(0)): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
  const head = Buffer.allocUnsafe(HEADER);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** The JSON object of a control frame; E_INVALID_ARGUMENT when it is not one. */
export function jsonOf(payload: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new KataError('E_INVALID_ARGUMENT', `exec stream: the ${what} frame is not JSON`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new KataError('E_INVALID_ARGUMENT', `exec stream: the ${what} frame is not a JSON object`);
  return v as Record<string, unknown>;
}

/** Splits a byte stream into frames; a frame longer than MAX_PAYLOAD is a protocol error. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (type: number, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= HEADER) {
      const len = this.buf.readUInt32BE(1);
      if (len > MAX_PAYLOAD)
        throw new KataError('E_INVALID_ARGUMENT', `exec stream: a frame of ${len} bytes is over the ${MAX_PAYLOAD} limit`);
      if (this.buf.length < HEADER + len) return;
      const type = this.buf.readUInt8(0);
      const payload = this.buf.subarray(HEADER, HEADER + len);
      this.buf = this.buf.subarray(HEADER + len);
      this.onFrame(type, payload);
    }
  }
}
