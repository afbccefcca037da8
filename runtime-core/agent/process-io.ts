/**
 * Host side of a guest process's stdio: pumps between host streams (containerd's FIFOs, a CLI's
 * own stdio) and the agent's WriteStdin/CloseStdin and ReadStdout/ReadStderr.
 *
 * - stdin: the source is read with backpressure (one WriteStdin in flight, each up to `chunk`
 *   bytes), and CloseStdin follows its EOF, after every earlier write was acknowledged.
 * - stdout/stderr: `inflight` reads are kept outstanding (they are answered in order, so the bytes
 *   are written in order); a slow destination pauses the reads (drain), so the agent's buffer
 *   fills and the guest process blocks instead of anything being dropped.
 * - Streams are independent (closing stdin never ends the output pumps; Kata #13640).
 * - cancel() (or the signal) stops every pump and rejects its pending calls; a dying VM closes the
 *   agent connection, which rejects them too.
 */
import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import type { AgentClient } from './client.js';

const DEFAULT_READ_LEN = 1024 * 1024;
const DEFAULT_WRITE_CHUNK = 1024 * 1024;

export interface OutputPumpOptions {
  /** Bytes asked for per read (default 1 MiB; the agent answers with what it has, up to this). */
  len?: number;
  /** Reads kept outstanding (default 2: one is answered while the next is on its way). */
  inflight?: number;
  signal?: AbortSignal;
  /** Called with each chunk's size once it was handed to dst (progress, for an idle bound). */
  onData?: (bytes: number) => void;
}

/** Copy a guest process's stdout or stderr into dst until EOF; resolves with the byte count. dst is not ended. */
export async function pumpOutput(
  client: AgentClient,
  containerId: string,
  execId: string,
  which: 'stdout' | 'stderr',
  dst: Writable,
  opts: OutputPumpOptions = {},
): Promise<number> {
  const len = opts.len ?? DEFAULT_READ_LEN;
  const depth = Math.max(1, opts.inflight ?? 2);
  const read = (): Promise<Buffer> =>
    which === 'stdout'
      ? client.readStdout(containerId, execId, len, { signal: opts.signal })
      : client.readStderr(containerId, execId, len, { signal: opts.signal });
  const queue: Promise<Buffer>[] = [];
  let total = 0;
  try {
    for (;;) {
      while (queue.length < depth) queue.push(read());
      const data = await queue.shift()!;
      if (data.length === 0) return total;
      total += data.length;
      opts.onData?.(data.length);
      if (!dst.write(data)) {
        // The loser's listeners go too (else each pause leaves a 'close' and an 'error' listener behind).
        const settled = new AbortController();
        await Promise.race([once(dst, 'drain', { signal: settled.signal }), once(dst, 'close', { signal: settled.signal })]).finally(() =>
          settled.abort(),
        );
      }
    }
  } finally {
    for (const q of queue) q.catch(() => {}); // answers to reads past EOF or after a failure
  }
}

interface InputPumpOptions {
  /** Most bytes per WriteStdin (default 1 MiB). */
  chunk?: number;
  signal?: AbortSignal;
}

/** Copy src into the guest process's stdin, then CloseStdin at src's EOF; resolves with the byte count. */
export async function pumpStdin(
  client: AgentClient,
  containerId: string,
  execId: string,
  src: Readable,
  opts: InputPumpOptions = {},
): Promise<number> {
  const chunk = opts.chunk ?? DEFAULT_WRITE_CHUNK;
  let total = 0;
  for await (const d of src) {
    const buf = typeof d === 'string' ? Buffer.from(d) : (d as Buffer);
    for (let off = 0; off < buf.length; off += chunk) {
      total += await client.writeStdin(containerId, execId, buf.subarray(off, off + chunk), { signal: opts.signal });
    }
  }
  await client.closeStdin(containerId, execId, { signal: opts.signal });
  return total;
}

export interface ProcessStreams {
  /** Forwarded to the process; without it, stdin is closed at once (so a reader sees EOF). */
  stdin?: Readable;
  stdout?: Writable;
  /** Absent for a terminal process (the pty merges it) or when not wanted. */
  stderr?: Writable;
}

export interface AttachOptions extends OutputPumpOptions {
  /** No stdin pump and no CloseStdin (a terminal that the caller drives itself). */
  leaveStdinOpen?: boolean;
}

/** The pumps of one process; `output` settles when stdout and stderr reached EOF. */
export class ProcessIo {
  readonly output: Promise<{ stdout: number; stderr: number }>;
  readonly input: Promise<number>;
  /** Date.now() when output last moved (0: none yet). */
  lastOutputAt = 0;
  private readonly abort = new AbortController();

  constructor(client: AgentClient, containerId: string, execId: string, streams: ProcessStreams, opts: AttachOptions = {}) {
    const signal = opts.signal ? AbortSignal.any([opts.signal, this.abort.signal]) : this.abort.signal;
    const o = {
      ...opts,
      signal,
      onData: (n: number) => {
        this.lastOutputAt = Date.now();
        opts.onData?.(n);
      },
    };
    const out = streams.stdout ? pumpOutput(client, containerId, execId, 'stdout', streams.stdout, o) : Promise.resolve(0);
    const err = streams.stderr ? pumpOutput(client, containerId, execId, 'stderr', streams.stderr, o) : Promise.resolve(0);
    this.output = Promise.all([out, err]).then(([stdout, stderr]) => ({ stdout, stderr }));
    this.input = streams.stdin
      ? pumpStdin(client, containerId, execId, streams.stdin, { signal })
      : opts.leaveStdinOpen
        ? Promise.resolve(0)
        : client.closeStdin(containerId, execId, { signal }).then(() => 0);
    this.output.catch(() => {});
    this.input.catch(() => {});
  }

  /** Stop every pump; their pending calls reject. */
  cancel(reason = 'cancelled'): void {
    this.abort.abort(reason);
  }
}
