/**
 * containerd's stdio FIFOs (made by the client: ctr or CRI) as Node streams for the process pumps.
 *
 * - stdout/stderr are opened O_RDWR|O_NONBLOCK: the open never blocks, and holding both ends means
 *   a client that goes away costs no EPIPE; a client that stops reading only fills the pipe, which
 *   stalls the pump (and the guest process), never the exit report.
 * - stdin is opened O_RDONLY in blocking mode in the background (it returns once the client has
 *   the write end), then read as a pipe; its EOF (the client closed it) becomes CloseStdin. Closing
 *   before the client came unblocks that open by opening the write end once ourselves.
 *
 * A path may carry the `fifo://` scheme; the binary:// and file:// log drivers are not supported.
 *
 * A pending blocking open holds a libuv pool thread, and Node's exit joins those threads: a process
 * exiting with one pending would hang for ever. `releasePendingOpens()` satisfies each of them (the
 * daemon calls it before every exit).
 */
import { close, closeSync, constants as fsc, open, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { KataError } from '../host/errors.js';

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export interface OpenedStdio {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  close(): void;
}

/** stdin FIFOs whose blocking open has not returned yet. */
const pendingOpens = new Set<string>();

/** Open the write end of a FIFO once, so a blocked open of its read end returns. */
function satisfyOpen(path: string): void {
  try {
    closeSync(openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK));
  } catch {
    /* nobody waiting */
  }
}

/** Let every pending stdin open return (before the process exits: see the header). */
export function releasePendingOpens(): void {
  for (const p of pendingOpens) satisfyOpen(p);
}

function fifoPath(uri: string, what: string): string {
  if (uri === '') return '';
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/.exec(uri);
  if (!m) return uri;
  if (m[1] === 'fifo') return m[2]!;
  throw new KataError('E_UNSUPPORTED', `${what} ${uri}: the ${m[1]}:// I/O scheme is not supported (FIFOs only)`, { uri });
}

function writer(path: string): Writable {
  const fd = openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK);
  const s = new Socket({ fd, readable: false, writable: true });
  s.on('error', () => {});
  return s;
}

export function openStdio(p: StdioPaths): OpenedStdio {
  const stdinPath = fifoPath(p.stdin, 'stdin');
  const stdoutPath = fifoPath(p.stdout, 'stdout');
  // With a terminal the pty merges stderr (containerd sends no stderr path then).
  const stderrPath = p.terminal ? '' : fifoPath(p.stderr, 'stderr');
  const opened: Socket[] = [];
  const stdout = stdoutPath ? writer(stdoutPath) : undefined;
  const stderr = stderrPath ? writer(stderrPath) : undefined;
  let stdin: PassThrough | undefined;
  let closed = false;
  let inSock: Socket | undefined;
  if (stdinPath) {
    stdin = new PassThrough();
    const out = stdin;
    pendingOpens.add(stdinPath);
    // A plain fd (callback open), not a FileHandle: the socket owns and closes it, and a FileHandle
    // collected later would close the same number again (EBADF, fatal in Node 20).
    open(stdinPath, fsc.O_RDONLY, (err, fd) => {
      pendingOpens.delete(stdinPath);
      if (err) {
        out.end();
        return;
      }
      if (closed) {
        close(fd, () => {});
        out.end();
        return;
      }
      inSock = new Socket({ fd, readable: true, writable: false });
      inSock.on('error', () => out.end());
      inSock.pipe(out);
    });
  }
  for (const s of [stdout, stderr]) if (s) opened.push(s as Socket);
  return {
    ...(stdin ? { stdin } : {}),
    ...(stdout ? { stdout } : {}),
    ...(stderr ? { stderr } : {}),
    close() {
      if (closed) return;
      closed = true;
      for (const s of opened) s.destroy();
      inSock?.destroy();
      // Unblock our pending open of the read end (it waits for a writer).
      if (stdin && !inSock) satisfyOpen(stdinPath);
      stdin?.end();
    },
  };
}
