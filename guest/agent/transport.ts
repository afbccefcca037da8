/**
 * Byte transports for the AgentServer: the virtio-serial port in the guest, any stream (a unix
 * socket connection) in host tests.
 *
 * virtio-serial semantics that shape the port loop (drivers/char/virtio_console.c):
 * - while no host client is connected to the chardev, read() returns 0 at once (EOF) and blocking
 *   writes wait; so EOF means "poll again shortly", not "done";
 * - bytes the host sends before the guest opened the port wait in QEMU, so nothing is lost between
 *   boot and the agent's start.
 *
 * In the guest kata-init opens the port and its early agent serves it while node starts
 * (guest/init/early-agent.c); the agent then takes it over: servePort with a PortFd.
 */
import {
  closeSync,
  mkdirSync,
  openSync,
  read,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { LineSplitter } from './protocol.js';
import type { AgentServer } from './server.js';
import { sleep } from './pci-path.js';

const orElse = <T>(f: () => T, fallback: T): T => {
  try {
    return f();
  } catch {
    return fallback;
  }
};

/**
 * Find the /dev node of the virtio-serial port with this name; also make /dev/virtio-ports/NAME
 * (udev is absent). Synchronous fs calls on sysfs, and in servePort: they run once, before the
 * agent serves, and node:fs/promises would be 8 more modules to load first (builtins.ts).
 */
export async function findVirtioPort(name: string, sysfs = '/sys', dev = '/dev'): Promise<string | undefined> {
  const base = join(sysfs, 'class', 'virtio-ports');
  const entries = orElse(() => readdirSync(base), [] as string[]);
  for (const e of entries) {
    const n = orElse(() => readFileSync(join(base, e, 'name'), 'utf8'), '').trim();
    if (n !== name) continue;
    const node = join(dev, e);
    const dir = join(dev, 'virtio-ports');
    const link = join(dir, name);
    try {
      mkdirSync(dir, { recursive: true });
      const cur = orElse<string | undefined>(() => readlinkSync(link), undefined);
      if (cur !== `../${e}`) {
        if (cur !== undefined) unlinkSync(link);
        symlinkSync(`../${e}`, link);
      }
    } catch {
      // a read-only /dev is not fatal: the node itself is enough
    }
    return node;
  }
  return undefined;
}

export interface PortHandle {
  /** Stops reading (the read in flight finishes first). */
  stop(): void;
  done: Promise<void>;
}

/** The port as kata-init gives it (KATA_AGENT_FDS): open already, maybe served by its early agent until now. */
export interface PortFd {
  fd: number;
  /** The early agent's pipes (guest/init/early-agent.c): its handover to read, our readiness to write. */
  earlyAgent?: { handover: number; ready: number };
}

/**
 * Takes the port over from kata-init's early agent: says this agent is ready, then reads, to its
 * end, what the early agent read from the port and did not answer (it writes that and exits once it
 * has answered the request in hand). Blocking reads: nothing else is served until then anyway.
 */
function takeOver(early: { handover: number; ready: number }): Buffer {
  try {
    writeSync(early.ready, 'r');
  } catch {
    /* the early agent has ended already; its handover is in the pipe */
  }
  closeSync(early.ready);
  const parts: Buffer[] = [];
  const buf = Buffer.alloc(64 * 1024);
  for (let n: number; (n = readSync(early.handover, buf)) > 0; ) parts.push(Buffer.from(buf.subarray(0, n)));
  closeSync(early.handover);
  return Buffer.concat(parts);
}

/** Serve the agent on a character device (the virtio-serial port: a path, or kata-init's fd) until stop(). */
export async function servePort(server: AgentServer, port: string | PortFd, log: (m: string) => void = () => {}): Promise<PortHandle> {
  const path = typeof port === 'string' ? port : `fd ${port.fd}`;
  const fd = typeof port === 'string' ? openSync(port, 'r+') : port.fd;
  const early = typeof port === 'string' || !port.earlyAgent ? undefined : takeOver(port.earlyAgent);
  const readInto = (buf: Buffer): Promise<number> =>
    new Promise((resolve, reject) => read(fd, buf, 0, buf.length, null, (e, n) => (e ? reject(e) : resolve(n))));
  let stopped = false;
  let writes: Promise<unknown> = Promise.resolve();
  const send = (line: string): void => {
    const buf = Buffer.from(`${line}\n`);
    writes = writes
      .then(async () => {
        // Synchronous writes: the port takes at most 32 KiB per write(2) (virtio_console), and a
        // thread-pool round trip per 32 KiB costs more than the copy under TCG. Every response
        // goes through this port, so while it is blocked nothing else could be answered anyway.
        let off = 0;
        while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      })
      .catch((e) => log(`write to ${path} failed: ${(e as Error).message}`));
  };
  const splitter = new LineSplitter(
    (line) => void server.handleLine(line).then(send),
    () => send(JSON.stringify({ id: null, error: { code: 'E_PARSE', message: 'request line too long; dropped' } })),
  );
  if (early && early.length > 0) splitter.push(early);
  const done = (async () => {
    const buf = Buffer.alloc(64 * 1024);
    let idle = 0;
    while (!stopped) {
      let n: number;
      try {
        n = await readInto(buf);
      } catch (e) {
        log(`read from ${path} failed: ${(e as Error).message}`);
        await sleep(100);
        continue;
      }
      if (n === 0) {
        // No host connected: poll, slowing down a little while it stays away.
        idle = Math.min(idle + 1, 10);
        await sleep(idle < 10 ? 10 : 50);
        continue;
      }
      idle = 0;
      splitter.push(buf.subarray(0, n));
    }
    await writes;
    closeSync(fd);
  })();
  return {
    stop: () => {
      stopped = true;
    },
    done,
  };
}

/** Serve the agent on one stream connection (host tests, or a unix socket inside the guest). */
export function serveStream(server: AgentServer, sock: Socket): void {
  const splitter = new LineSplitter(
    (line) =>
      void server.handleLine(line).then((out) => {
        if (!sock.destroyed) sock.write(`${out}\n`);
      }),
    () => {
      if (!sock.destroyed)
        sock.write(`${JSON.stringify({ id: null, error: { code: 'E_PARSE', message: 'request line too long; dropped' } })}\n`);
    },
  );
  sock.on('data', (d: Buffer) => splitter.push(d));
  sock.on('error', () => sock.destroy());
}
