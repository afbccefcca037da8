/**
 * A scripted NBD server for the tests that need a server to misbehave: each connection runs the
 * test's script against a small toolkit (exact reads, the fixed-newstyle greeting, option replies,
 * requests, simple replies and structured chunks). The toolkit writes only what the script says,
 * so a script can stop half-way, lie about lengths or send garbage. Listens on a unix socket in a
 * temp dir; closed, with every connection destroyed, at teardown.
 */
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './nbd-servers.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export const NBDMAGIC = Buffer.from('NBDMAGIC');
export const IHAVEOPT = Buffer.from('IHAVEOPT');
const OPTION_REPLY_MAGIC = Buffer.from('0003e889045565a9', 'hex');

export interface Request {
  flags: number;
  type: number;
  cookie: Buffer;
  offset: number;
  length: number;
  payload?: Buffer;
}

export class Conn {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  ended = false;

  constructor(readonly socket: Socket) {
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  /** Exactly n bytes, or undefined when the client hung up first. */
  async read(n: number): Promise<Buffer | undefined> {
    while (this.buf.length < n) {
      if (this.ended) return undefined;
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  send(...parts: Buffer[]): void {
    if (!this.socket.destroyed) this.socket.write(Buffer.concat(parts));
  }

  /** NBDMAGIC IHAVEOPT + handshake flags (default fixed newstyle + no zeroes); reads the client flags. */
  async greet(flags = 3): Promise<number | undefined> {
    this.send(NBDMAGIC, IHAVEOPT, u16(flags));
    return (await this.read(4))?.readUInt32BE(0);
  }

  async option(): Promise<{ opt: number; data: Buffer } | undefined> {
    const h = await this.read(16);
    if (!h) return undefined;
    const len = h.readUInt32BE(12);
    const data = len ? await this.read(len) : Buffer.alloc(0);
    return data ? { opt: h.readUInt32BE(8), data } : undefined;
  }

  optReply(opt: number, type: number, data: Buffer = Buffer.alloc(0), lengthField = data.length): void {
    this.send(OPTION_REPLY_MAGIC, u32(opt), u32(type), u32(lengthField), data);
  }

  /** Answer options until NBD_OPT_GO: ACK structured replies (unless refused), then INFO_EXPORT (+ extras) and ACK. */
  async handshakeGo(
    size: number,
    flags: number,
    opts: { structured?: boolean; blockSize?: [number, number, number] } = {},
  ): Promise<boolean> {
    if ((await this.greet()) === undefined) return false;
    for (;;) {
      const o = await this.option();
      if (!o) return false;
      if (o.opt === 8) this.optReply(8, opts.structured === false ? 0x80000001 : 1);
      else if (o.opt === 7) {
        this.optReply(7, 3, Buffer.concat([u16(0), u64(size), u16(flags)]));
        if (opts.blockSize) this.optReply(7, 3, Buffer.concat([u16(3), ...opts.blockSize.map(u32)]));
        this.optReply(7, 1);
        return true;
      } else this.optReply(o.opt, 0x80000001);
    }
  }

  async request(): Promise<Request | undefined> {
    const h = await this.read(28);
    if (!h) return undefined;
    const r: Request = {
      flags: h.readUInt16BE(4),
      type: h.readUInt16BE(6),
      cookie: Buffer.from(h.subarray(8, 16)),
      offset: Number(h.readBigUInt64BE(16)),
      length: h.readUInt32BE(24),
    };
    if (r.type === 1) {
      const p = await this.read(r.length);
      if (!p) return undefined;
      r.payload = p;
    }
    return r;
  }

  simple(cookie: Buffer, error = 0, data: Buffer = Buffer.alloc(0)): void {
    this.send(u32(0x67446698), u32(error), cookie, data);
  }

  /** A structured chunk; `lengthField` lets the script lie about the payload length. */
  chunk(cookie: Buffer, flags: number, type: number, payload: Buffer, lengthField = payload.length): void {
    this.send(u32(0x668e33ef), u16(flags), u16(type), cookie, u32(lengthField), payload);
  }
}

export const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
export const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

/** A server running `script` for every connection; resolves to its nbd+unix URI. */
export async function hostileServer(t: Teardownable, script: (c: Conn) => Promise<void>): Promise<string> {
  const dir = tempDir(t, 'nbd-hostile');
  const path = join(dir, 'hostile.sock');
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    void script(new Conn(s)).catch(() => s.destroy());
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return `nbd+unix:///?socket=${path}`;
}
