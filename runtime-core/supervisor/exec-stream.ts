/**
 * The supervisor's end of the exec stream (exec/frames.ts): an upgraded connection on the
 * management socket becomes one exec session (exec/session.ts). Output frames are written with the
 * socket's backpressure (a slow client stops the reads from the agent, so the guest process blocks
 * instead of anything being dropped); stdin frames are paused the same way.
 */
import type { Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { KataError, isKataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import type { AgentClient } from '../agent/client.js';
import * as F from '../exec/frames.js';
import { execRequest, runExec, type ExecControl } from '../exec/session.js';

/** Bytes per output frame. */
const CHUNK = 1024 * 1024;

function frameWriter(sock: Socket, type: number): Writable {
  return new Writable({
    highWaterMark: CHUNK,
    // The callback waits for the socket to take the bytes, so a slow client fills this buffer and
    // the pump reading from the agent pauses (process-io.ts waits for 'drain').
    write(chunk: Buffer, _enc, cb) {
      if (chunk.length === 0) return cb();
      // The client went away (or the stream was failed): its output has nowhere to go.
      if (sock.destroyed || sock.writableEnded) return cb();
      for (let off = 0; off < chunk.length; off += CHUNK) {
        const last = off + CHUNK >= chunk.length;
        sock.write(F.frame(type, chunk.subarray(off, off + CHUNK)), last ? (e) => cb(e ?? null) : undefined);
      }
    },
  });
}

/** End a frame writer and wait until what it holds went to the socket (or the socket is gone). */
function drained(w: Writable): Promise<void> {
  if (w.writableFinished || w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    w.once('finish', resolve);
    w.once('close', resolve);
    w.end();
  });
}

/** Serve one upgraded connection; `agent()` throws when the sandbox has no agent (not running). */
export function serveExecStream(sock: Socket, head: Buffer, agent: () => AgentClient, log: Logger): void {
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${F.EXEC_UPGRADE}\r\nConnection: Upgrade\r\n\r\n`);
  const stdin = new PassThrough({ highWaterMark: CHUNK });
  const gone = new AbortController();
  let control: ExecControl | undefined;
  let started = false;
  const fail = (e: unknown): void => {
    const k = isKataError(e) ? e : new KataError('E_INTERNAL', (e as Error).message);
    if (!sock.destroyed && !sock.writableEnded) sock.end(F.frame(F.ERROR, { code: k.code, message: k.message, ...k.details }));
  };
  const start = (payload: Buffer): void => {
    const req = execRequest(F.jsonOf(payload, 'START'));
    const ch = {
      stdin,
      stdout: frameWriter(sock, F.STDOUT),
      stderr: frameWriter(sock, F.STDERR),
      closed: gone.signal,
      started: (info: { execId: string; pid: number }) => {
        sock.write(F.frame(F.STARTED, info));
        log.debug({ execId: info.execId, guestPid: info.pid, argv: req.argv, terminal: req.terminal }, 'exec started');
      },
    };
    runExec(agent(), req, ch, log, (c) => {
      control = c;
    }).then(
      async (r) => {
        // The pumps saw EOF, but a frame writer may still hold the last chunk: EXIT goes after it.
        await Promise.all([drained(ch.stdout), drained(ch.stderr)]);
        if (!sock.destroyed && !sock.writableEnded) sock.end(F.frame(F.EXIT, { status: r.status, timedOut: r.timedOut }));
      },
      (e) => fail(e),
    );
  };
  const reader = new F.FrameReader((type, payload) => {
    if (!started) {
      if (type !== F.START) throw new KataError('E_INVALID_ARGUMENT', 'exec stream: the first frame must be START');
      started = true;
      start(payload);
      return;
    }
    switch (type) {
      case F.STDIN:
        if (!stdin.write(Buffer.from(payload))) {
          sock.pause();
          stdin.once('drain', () => sock.resume());
        }
        break;
      case F.STDIN_EOF:
        stdin.end();
        break;
      case F.RESIZE: {
        const { rows, cols } = F.jsonOf(payload, 'RESIZE');
        if (typeof rows === 'number' && typeof cols === 'number') control?.resize(rows, cols);
        break;
      }
      case F.SIGNAL: {
        const { signal } = F.jsonOf(payload, 'SIGNAL');
        if (typeof signal === 'number' && Number.isInteger(signal) && signal > 0 && signal < 65) control?.signal(signal);
        break;
      }
      default:
        throw new KataError('E_INVALID_ARGUMENT', `exec stream: unknown frame type ${type}`);
    }
  });
  const onData = (d: Buffer): void => {
    try {
      reader.push(d);
    } catch (e) {
      fail(e);
      sock.off('data', onData);
    }
  };
  sock.on('data', onData);
  sock.on('error', () => {});
  // The HTTP server's sockets allow half-open connections: the client's end is its going away.
  const away = (): void => {
    gone.abort('the exec client went away');
    stdin.destroy();
  };
  sock.on('end', away);
  sock.on('close', away);
  if (head.length > 0) onData(head);
}
