/**
 * The CLI's end of the exec stream (exec/frames.ts): opens `GET /Exec` with an Upgrade on the
 * supervisor's socket, sends the request, forwards stdin (with the destination's backpressure),
 * writes stdout and stderr as they come (pausing the stream while a local destination drains),
 * and resolves with the exit status. With a terminal: the local terminal in raw mode, its window
 * size sent at start and on every change. Without one: SIGINT, SIGTERM, SIGHUP and SIGQUIT are
 * forwarded to the guest process.
 */
import { request } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { KataError, isErrorCode } from '../../host/errors.js';
import * as F from '../exec/frames.js';
import type { ExecRequest } from '../exec/session.js';

export interface ExecIo {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: Writable & { isTTY?: boolean; columns?: number; rows?: number };
  stderr: Writable;
}

const CHUNK = 1024 * 1024;
const SIGNALS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 };

function connect(socketPath: string): Promise<{ sock: Socket; head: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath,
      method: 'GET',
      path: '/Exec',
      headers: { Connection: 'Upgrade', Upgrade: F.EXEC_UPGRADE },
    });
    req.on('upgrade', (_res, sock, head) => resolve({ sock, head }));
    req.on('response', (res) => {
      res.resume();
      reject(new KataError('E_INTERNAL', `the supervisor refused the exec stream (HTTP ${res.statusCode}); is it older than this CLI?`));
    });
    req.on('error', (e) => reject(new KataError('E_AGENT', `cannot open the exec stream on ${socketPath}: ${e.message}`)));
    req.end();
  });
}

/** Run req in the sandbox behind socketPath; resolves with the guest process's exit status. */
export async function execStream(socketPath: string, req: ExecRequest, io: ExecIo): Promise<{ status: number; timedOut: boolean }> {
  const { sock, head } = await connect(socketPath);
  const tty = req.terminal && io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function';
  const size = (): { rows: number; cols: number } | undefined =>
    io.stdout.isTTY && io.stdout.rows && io.stdout.columns ? { rows: io.stdout.rows, cols: io.stdout.columns } : undefined;
  const cleanups: (() => void)[] = [];
  try {
    return await new Promise((resolve, reject) => {
      let settled = false;
      let exited = false;
      const done = (f: () => void): void => {
        if (settled) return;
        settled = true;
        f();
      };
      const write = (dst: Writable, data: Buffer): void => {
        if (!dst.write(Buffer.from(data))) {
          sock.pause();
          dst.once('drain', () => sock.resume());
        }
      };
      const reader = new F.FrameReader((type, payload) => {
        switch (type) {
          case F.STARTED:
            startInput();
            break;
          case F.STDOUT:
            write(io.stdout, payload);
            break;
          case F.STDERR:
            write(io.stderr, payload);
            break;
          case F.EXIT: {
            const x = F.jsonOf(payload, 'EXIT');
            exited = true;
            // Resolve once the local streams took every byte written before.
            const wait = (w: Writable): Promise<void> =>
              new Promise((r) => {
                if (!w.writableNeedDrain) return r();
                for (const ev of ['drain', 'close', 'error']) w.once(ev, () => r());
              });
            void Promise.all([wait(io.stdout), wait(io.stderr)]).then(() =>
              done(() => resolve({ status: Number(x.status), timedOut: x.timedOut === true })),
            );
            break;
          }
          case F.ERROR: {
            const { code, message, ...details } = F.jsonOf(payload, 'ERROR');
            done(() => reject(new KataError(isErrorCode(code) ? code : 'E_INTERNAL', String(message ?? 'exec failed'), details)));
            break;
          }
          default:
            throw new KataError('E_INTERNAL', `exec stream: unknown frame type ${type} from the supervisor`);
        }
      });
      sock.on('data', (d: Buffer) => {
        try {
          reader.push(d);
        } catch (e) {
          done(() => reject(e));
          sock.destroy();
        }
      });
      sock.on('error', (e) => done(() => reject(new KataError('E_AGENT', `the exec stream failed: ${e.message}`))));
      // After EXIT the supervisor closes its end while the local streams may still be draining:
      // that close is the stream's normal end, not a failure.
      sock.on('close', () => {
        if (!exited)
          done(() =>
            reject(new KataError('E_AGENT', 'the supervisor closed the exec stream before the command ended (did the sandbox stop?)')),
          );
      });

      const send = (type: number, payload?: Buffer | Record<string, unknown>): boolean =>
        !sock.destroyed && sock.write(F.frame(type, payload));
      let inputStarted = false;
      const startInput = (): void => {
        if (inputStarted) return;
        inputStarted = true;
        if (tty) {
          io.stdin.setRawMode!(true);
          cleanups.push(() => io.stdin.setRawMode!(false));
        }
        const onData = (d: Buffer | string): void => {
          const b = typeof d === 'string' ? Buffer.from(d) : d;
          let ok = true;
          for (let off = 0; off < b.length; off += CHUNK) ok = send(F.STDIN, b.subarray(off, off + CHUNK));
          if (!ok) {
            io.stdin.pause();
            sock.once('drain', () => io.stdin.resume());
          }
        };
        const onEnd = (): void => void send(F.STDIN_EOF);
        io.stdin.on('data', onData);
        io.stdin.once('end', onEnd);
        io.stdin.on('error', onEnd);
        cleanups.push(() => {
          io.stdin.off('data', onData);
          io.stdin.off('end', onEnd);
          io.stdin.pause();
        });
        if (req.terminal) {
          const onResize = (): void => {
            const s = size();
            if (s) send(F.RESIZE, s);
          };
          io.stdout.on('resize', onResize);
          cleanups.push(() => io.stdout.off('resize', onResize));
        } else {
          for (const [name, num] of Object.entries(SIGNALS) as [NodeJS.Signals, number][]) {
            const h = (): void => void send(F.SIGNAL, { signal: num });
            process.on(name, h);
            cleanups.push(() => process.off(name, h));
          }
        }
      };

      const s = req.terminal ? size() : undefined;
      send(F.START, { ...req, ...(s ? { rows: s.rows, cols: s.cols } : {}) } as unknown as Record<string, unknown>);
      if (head.length > 0) sock.emit('data', head);
    });
  } finally {
    for (const c of cleanups.reverse()) c();
    sock.destroy();
  }
}
