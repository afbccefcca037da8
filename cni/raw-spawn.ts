import { EventEmitter } from 'node:events';

/**
 * A child process with three pipes (or six: helper-pair.ts), started through Node's own process
 * and pipe handles (`process.binding('process_wrap' | 'pipe_wrap' | 'stream_wrap')`, the layer
 * node:child_process is written on) instead of node:child_process. Used only for the helpers every
 * kata-cni call starts first thing (early-helpers.ts, helper-pair.ts): loading node:child_process
 * and wrapping six pipes in net.Socket streams costs about 7 ms of CPU per call here, more than
 * everything else kata-cni does besides Node's own start; this costs about 1 ms (bench/cni.ts, README "Startup cost").
 *
 * It offers exactly what CoprocessNetlink (host/netlink.ts) uses of a ChildProcess: pid,
 * spawnfile/spawnargs, exitCode/signalCode, kill, ref/unref, 'error' and 'exit' events, and stdio
 * objects with write/end (stdin), setEncoding + 'data' (stdout, stderr), on('error'), ref/unref.
 * The bindings are internal to Node (documentation-only deprecated, DEP0111): if any piece is not
 * there or not of the expected shape, rawSpawn returns undefined and the caller uses
 * node:child_process. test/cni/raw-spawn-behaves-as-child-process-for-the-helpers.test.ts runs both
 * side by side.
 */
interface StreamState {
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
  WriteWrap: new () => WriteReq;
  ShutdownWrap: new () => WriteReq;
}
interface WriteReq {
  handle?: unknown;
  oncomplete?: (status: number) => void;
  async?: boolean;
}
interface PipeHandle {
  onread: (ab: ArrayBuffer | undefined) => void;
  readStart(): number;
  writeUtf8String(req: WriteReq, s: string): number;
  shutdown(req: WriteReq): number;
  close(cb?: () => void): void;
  ref(): void;
  unref(): void;
  open(fd: number): number;
}
interface ProcessHandle {
  pid?: number;
  onexit: (exitCode: number, signal: string | null) => void;
  spawn(o: unknown): number;
  kill(sig: number): number;
  close(cb?: () => void): void;
  ref(): void;
  unref(): void;
}
interface Bindings {
  Process: new () => ProcessHandle;
  Pipe: new (type: number) => PipeHandle;
  SOCKET: number;
  s: StreamState;
}

const SIGNALS: Readonly<Record<string, number>> = { SIGTERM: 15, SIGKILL: 9, SIGINT: 2, SIGSTOP: 19, SIGCONT: 18 };

export interface SpawnOptions {
  /** 3: three more pipes, on the child's fds 3 (it reads), 4 and 5 (it writes). */
  extra?: 0 | 3;
  /** The command line to report as spawnfile/spawnargs instead of file and args. */
  shownAs?: readonly [string, readonly string[]];
}

let bindings: Bindings | null | undefined;

function load(): Bindings | null {
  if (bindings !== undefined) return bindings;
  bindings = null;
  try {
    const binding = (process as unknown as { binding?: (n: string) => Record<string, unknown> }).binding;
    if (typeof binding !== 'function') return null;
    const pw = binding('process_wrap') as { Process?: Bindings['Process'] };
    const pp = binding('pipe_wrap') as { Pipe?: Bindings['Pipe']; constants?: { SOCKET?: number } };
    const sw = binding('stream_wrap') as Partial<StreamState>;
    if (typeof pw.Process !== 'function' || typeof pp.Pipe !== 'function' || typeof pp.constants?.SOCKET !== 'number') return null;
    if (!(sw.streamBaseState instanceof Int32Array) || typeof sw.WriteWrap !== 'function' || typeof sw.ShutdownWrap !== 'function')
      return null;
    for (const k of [sw.kReadBytesOrError, sw.kArrayBufferOffset, sw.kLastWriteWasAsync]) if (typeof k !== 'number') return null;
    const proto = pp.Pipe.prototype as Partial<PipeHandle>;
    for (const m of [proto.readStart, proto.writeUtf8String, proto.shutdown, proto.open]) if (typeof m !== 'function') return null;
    bindings = { Process: pw.Process, Pipe: pp.Pipe, SOCKET: pp.constants.SOCKET, s: sw as StreamState };
  } catch {
    bindings = null;
  }
  return bindings;
}

/**
 * A pipe the plugin reads. With setEncoding('utf8') it emits text up to the last newline read so
 * far and keeps the rest: a newline byte is never part of a UTF-8 sequence, so no character is cut,
 * and no TextDecoder is needed (its first use compiles Node's internal encoding code: about 0.3 ms
 * of every call). The helpers write lines; what follows the last one comes at EOF.
 *
 * As a paused stream does, it holds what it reads (and the EOF) until it has a 'data' listener: an
 * inherited helper may have answered a request of the shell's before the plugin listens
 * (inherited-helpers.ts). watch() sees every chunk as it is read, held or not.
 */
export class Reader extends EventEmitter {
  private text = false;
  private rest: Buffer | undefined;
  /** What was read before the first 'data' listener (undefined once it was delivered). */
  private held: (Buffer | null)[] | undefined = [];
  private watcher: ((chunk: Buffer) => void) | undefined;

  constructor(
    readonly handle: PipeHandle,
    s: StreamState,
  ) {
    super();
    this.on('newListener', (event: string) => {
      if (event === 'data' && this.held) queueMicrotask(() => this.release());
    });
    handle.onread = (ab) => {
      const n = s.streamBaseState[s.kReadBytesOrError]!;
      if (n > 0 && ab) {
        const bytes = Buffer.from(new Uint8Array(ab, s.streamBaseState[s.kArrayBufferOffset]!, n));
        this.watcher?.(bytes);
        if (this.held) this.held.push(bytes);
        else this.deliver(bytes);
      } else if (n < 0) {
        // EOF or a read error. (onread must stay a function: Node asserts it.)
        handle.onread = () => {};
        handle.close();
        if (this.held) this.held.push(null);
        else this.deliver(null);
      }
    };
    handle.readStart();
  }

  /** Call fn with every chunk as it is read, before any 'data' listener sees it. */
  watch(fn: (chunk: Buffer) => void): void {
    this.watcher = fn;
  }

  private release(): void {
    const held = this.held;
    if (!held || this.listenerCount('data') === 0) return;
    this.held = undefined;
    for (const chunk of held) this.deliver(chunk);
  }

  /** A chunk, or null: EOF. */
  private deliver(bytes: Buffer | null): void {
    if (bytes === null) {
      if (this.rest) this.emit('data', this.rest.toString('utf8'));
      this.rest = undefined;
      this.emit('end');
    } else if (this.text) {
      this.emitText(bytes);
    } else {
      this.emit('data', bytes);
    }
  }

  private emitText(bytes: Buffer): void {
    const all = this.rest ? Buffer.concat([this.rest, bytes]) : bytes;
    const nl = all.lastIndexOf(10);
    this.rest = nl + 1 < all.length ? all.subarray(nl + 1) : undefined;
    if (nl >= 0) this.emit('data', all.toString('utf8', 0, nl + 1));
  }

  setEncoding(_enc: 'utf8'): this {
    this.text = true;
    return this;
  }

  /** Stop reading and close the pipe (no 'end'). */
  close(): void {
    this.held = undefined;
    this.handle.onread = () => {};
    this.handle.close();
  }

  ref(): void {
    this.handle.ref();
  }

  unref(): void {
    this.handle.unref();
  }
}

export class Writer extends EventEmitter {
  private closed = false;
  private readonly inFlight = new Set<WriteReq>();

  constructor(
    readonly handle: PipeHandle,
    private readonly s: StreamState,
  ) {
    super();
  }

  write(text: string): boolean {
    if (this.closed) {
      process.nextTick(() => this.emit('error', Object.assign(new Error('write after end'), { code: 'EPIPE' })));
      return false;
    }
    const req = new this.s.WriteWrap();
    req.handle = this.handle;
    req.oncomplete = (status) => {
      this.inFlight.delete(req);
      if (status < 0) this.emit('error', Object.assign(new Error(`write failed (${status})`), { errno: status }));
    };
    const err = this.handle.writeUtf8String(req, text);
    if (err < 0) {
      process.nextTick(() => this.emit('error', Object.assign(new Error(`write failed (${err})`), { errno: err, code: 'EPIPE' })));
      return false;
    }
    if (this.s.streamBaseState[this.s.kLastWriteWasAsync]) this.inFlight.add(req); // kept alive until oncomplete
    return true;
  }

  /** Close the child's stdin once every write is done (a shutdown, then close). */
  end(text?: string): void {
    if (text) this.write(text);
    if (this.closed) return;
    this.closed = true;
    const req = new this.s.ShutdownWrap();
    req.handle = this.handle;
    req.oncomplete = () => this.handle.close();
    if (this.handle.shutdown(req) < 0) this.handle.close();
  }

  ref(): void {
    if (!this.closed) this.handle.ref();
  }

  unref(): void {
    if (!this.closed) this.handle.unref();
  }
}

/**
 * A pipe end this process already holds (fd: e.g. one it inherited, cni/inherited-helpers.ts) as
 * a Writer ('w') or a Reader ('r', reading at once); undefined when the bindings are unusable or
 * the fd is no pipe. The handle owns the fd from then on.
 */
export function openPipe(fd: number, kind: 'r'): Reader | undefined;
export function openPipe(fd: number, kind: 'w'): Writer | undefined;
export function openPipe(fd: number, kind: 'r' | 'w'): Reader | Writer | undefined {
  const b = load();
  if (!b) return undefined;
  const handle = new b.Pipe(b.SOCKET);
  if (handle.open(fd) !== 0) {
    handle.close();
    return undefined;
  }
  return kind === 'w' ? new Writer(handle, b.s) : new Reader(handle, b.s);
}

export class RawChild extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly pid: number | undefined;

  readonly stdin: Writer;
  readonly stdout: Reader;
  readonly stderr: Reader;
  /** With opts.extra: the pipes on fds 3, 4, 5 (a Writer, then two Readers). */
  readonly extra: [Writer, Reader, Reader] | undefined;

  private constructor(
    private readonly proc: ProcessHandle,
    readonly spawnfile: string,
    readonly spawnargs: string[],
    stdio: (Writer | Reader)[],
  ) {
    super();
    this.pid = proc.pid;
    [this.stdin, this.stdout, this.stderr] = stdio as [Writer, Reader, Reader];
    this.extra = stdio.length === 6 ? (stdio.slice(3) as [Writer, Reader, Reader]) : undefined;
    proc.onexit = (code, signal) => {
      if (signal) this.signalCode = signal as NodeJS.Signals;
      else this.exitCode = code;
      proc.close();
      this.emit('exit', this.exitCode, this.signalCode);
    };
  }

  /**
   * Start file (looked up on PATH) with args, three pipes (plus opts.extra more: fds 3, 4, 5 as a
   * second stdin, stdout, stderr), the current environment; undefined: not started. opts.shownAs is
   * the command line spawnfile/spawnargs report (for a shell that execs it: see helper-pair.ts).
   */
  static spawn(file: string, args: readonly string[], opts: SpawnOptions = {}): RawChild | undefined {
    const b = load();
    if (!b) return undefined;
    const pipes = Array.from({ length: 3 + (opts.extra ?? 0) }, () => new b.Pipe(b.SOCKET));
    const proc = new b.Process();
    const envPairs = Object.entries(process.env)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`);
    const err = proc.spawn({
      file,
      args: [file, ...args],
      envPairs,
      // fd 0 (and 3) the child reads, the others it writes.
      stdio: pipes.map((handle, fd) => ({ type: 'pipe', readable: fd % 3 === 0, writable: fd % 3 !== 0, handle })),
    });
    if (err !== 0) {
      // e.g. ENOENT: no helper; the caller's own spawn through node:child_process reports it as usual.
      for (const p of pipes) p.close();
      proc.close();
      return undefined;
    }
    const [shownFile, shownArgs] = opts.shownAs ?? [file, args];
    const stdio = pipes.map((p, fd) => (fd % 3 === 0 ? new Writer(p, b.s) : new Reader(p, b.s)));
    return new RawChild(proc, shownFile, [shownFile, ...shownArgs], stdio);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.exitCode !== null || this.signalCode !== null) return false;
    return this.proc.kill(SIGNALS[signal] ?? 15) === 0;
  }

  ref(): void {
    this.proc.ref();
  }

  unref(): void {
    this.proc.unref();
  }
}
