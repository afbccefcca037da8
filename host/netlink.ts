import { spawn, type ChildProcess } from 'node:child_process';
import { TextLines, failedLineNumber, parseBatchStderr as parseBatchOutput, type LineOutcome } from './batch-output.js';
import { holdEventLoop } from './child-ref.js';
import { ExecError, KataError, NetlinkError, codeForKernelMessage } from './errors.js';
import { noteSpawn, run } from './exec.js';
import { type LightTimer, lightTimer } from './light-timer.js';
import { type NetnsRef, netnsLabel, toolArgv, netnsExists } from './netns.js';

export type Tool = 'ip' | 'tc';

/** Outcome of one batch: for each line, null when it succeeded, else the kernel's message. */
export type BatchOutcome = LineOutcome[];

/**
 * How plugins reach `ip` and `tc`. Writes go in batches (`-batch -`, with `-force` so that every
 * line runs and each failure is reported against its line); reads return parsed `-json`.
 *
 * Two implementations share these semantics: SpawnNetlink (one process per call: what a short-lived
 * process such as a CNI plugin wants) and CoprocessNetlink (one long-lived `ip`/`tc` per namespace
 * fed line by line: what the long-lived runtime core wants, near the kernel floor).
 */
export interface Netlink {
  batch(tool: Tool, ns: NetnsRef | undefined, lines: readonly string[]): Promise<BatchOutcome>;
  json<T = unknown>(tool: Tool, ns: NetnsRef | undefined, args: readonly string[]): Promise<T>;
  /** Forget anything held for this namespace (coprocesses keep a namespace alive). */
  release(ns: NetnsRef | undefined): Promise<void>;
  close(): Promise<void>;
}

/** Parse batch stderr (see batch-output.ts); `preamble` is what no failed line claimed. */
export function parseBatchStderr(stderr: string, lineCount: number, firstLine = 1): { outcome: BatchOutcome; preamble: string } {
  const { outcome, rest } = parseBatchOutput(stderr, lineCount, firstLine);
  return { outcome, preamble: rest };
}

/** Throw the first failure of an outcome as a NetlinkError naming the line. */
function throwOnFailure(tool: Tool, ns: NetnsRef | undefined, lines: readonly string[], outcome: BatchOutcome): void {
  const i = outcome.findIndex((o) => o !== null);
  if (i >= 0) {
    const msg = outcome[i] as string;
    throw new NetlinkError(tool, netnsLabel(ns), lines[i] ?? '?', msg, codeForKernelMessage(msg));
  }
}

function nsGoneError(ns: NetnsRef | undefined, stderr: string): KataError {
  return new KataError('E_NETNS_NOT_FOUND', `network namespace ${netnsLabel(ns)} does not exist${stderr ? `: ${stderr.trim()}` : ''}`, {
    netns: ns?.path,
  });
}

function checkLines(lines: readonly string[]): void {
  for (const l of lines) {
    if (/[\n\r\0]/.test(l)) throw new KataError('E_INTERNAL', `batch line contains a line break: ${JSON.stringify(l)}`);
  }
}

export class SpawnNetlink implements Netlink {
  constructor(private readonly timeoutMs = 20_000) {}

  async batch(tool: Tool, ns: NetnsRef | undefined, lines: readonly string[]): Promise<BatchOutcome> {
    if (lines.length === 0) return [];
    checkLines(lines);
    if (ns && !netnsExists(ns)) throw nsGoneError(ns, '');
    const [file, args] = toolArgv(tool, ns, ['-force', '-batch', '-']);
    const r = await run(file, args, { input: `${lines.join('\n')}\n`, reject: false, timeoutMs: this.timeoutMs });
    const { outcome, preamble } = parseBatchStderr(r.stderr, lines.length);
    if (r.exitCode !== 0 && outcome.every((o) => o === null)) {
      if (/network namespace|setns|nsenter/i.test(preamble)) throw nsGoneError(ns, preamble);
      throw new KataError('E_NETLINK', `${tool} -batch in netns ${netnsLabel(ns)} failed: ${preamble || `exit ${r.exitCode}`}`);
    }
    return outcome;
  }

  async json<T>(tool: Tool, ns: NetnsRef | undefined, args: readonly string[]): Promise<T> {
    if (ns && !netnsExists(ns)) throw nsGoneError(ns, '');
    const [file, argv] = toolArgv(tool, ns, ['-json', ...args]);
    const r = await run(file, argv, { reject: false, timeoutMs: this.timeoutMs });
    if (r.exitCode !== 0) {
      if (/Cannot open network namespace|setns/i.test(r.stderr)) throw nsGoneError(ns, r.stderr);
      throw new NetlinkError(tool, netnsLabel(ns), args.join(' '), r.stderr, codeForKernelMessage(r.stderr));
    }
    const text = r.stdout.trim();
    return (text === '' ? [] : JSON.parse(text)) as T;
  }

  async release(): Promise<void> {}
  async close(): Promise<void> {}
}

interface Pending {
  lines: readonly string[];
  firstLine: number;
  sentinelLine: number;
  read: boolean;
  outcome: BatchOutcome;
  stdout: string[];
  sentinelSeen: boolean;
  resolve: (v: { outcome: BatchOutcome; stdout: string[] }) => void;
  reject: (e: unknown) => void;
}

/**
 * Sentinel commands: always fail at once (an invalid device name), with no side effect. Not
 * `link show`: in a batch, `ip link show` leaves the address family set to AF_PACKET for the rest
 * of the process, and every later `addr show` would come back without addresses.
 */
export const SENTINEL: Readonly<Record<Tool, string>> = { ip: 'addr show dev a/b', tc: 'qdisc show dev a/b' };

/**
 * What a helper was sent before CoprocessNetlink adopted it (by whoever started it: the kata-cni
 * executable's shell lines send the pod link's read, cni/build/shell-boot.ts): one request's lines,
 * which the SENTINEL line followed. An adopted child that says so (`preSent`) has its answer taken
 * as the answer to the first request of exactly those lines; any other first request leaves it unused.
 */
export interface PreSent {
  lines: readonly string[];
  read: boolean;
}

/** The batch line CoprocessNetlink sends for json('ip', ns, ['-details', 'addr', 'show', 'dev', name]) on an ipDetails helper. */
export function linkReadLine(name: string): string {
  return `addr show dev ${name}`;
}

/**
 * The command line of a long-lived helper: `ip`/`tc` in -batch mode reading stdin, each failure
 * reported per line (-force), reads as JSON. With `ipDetails`, `ip` also prints link details
 * (-details: kind, tun mode, parent bus), so reads that ask for them need no process of their own.
 */
export function helperArgv(tool: Tool, ns: NetnsRef | undefined, ipDetails = false): [string, string[]] {
  const flags = tool === 'ip' && ipDetails ? ['-force', '-json', '-details', '-batch', '-'] : ['-force', '-json', '-batch', '-'];
  return toolArgv(tool, ns, flags);
}

/** A helper's spawn failure as the host layer reports it for one-shot commands (see exec.ts). */
function spawnError(file: string, args: readonly string[], e: NodeJS.ErrnoException): Error {
  if (e.code !== 'ENOENT') return e;
  const pkg = file === 'nsenter' ? 'util-linux' : 'iproute2';
  return new ExecError(
    'E_EXEC_NOT_FOUND',
    [file, ...args].join(' '),
    '',
    undefined,
    `${file}: not found (install the Debian package ${pkg})`,
  );
}

/** One long-lived `ip`/`tc` in -batch mode for one namespace. */
class Coprocess {
  private child: ChildProcess;
  private lineNo = 0;
  private queue: Pending[] = [];
  private readonly out = new TextLines((l) => this.onStdoutLine(l));
  private readonly err = new TextLines((l) => this.onStderrLine(l));
  private errPending: string[] = [];
  dead = false;
  private failure: unknown;
  private idleTimer: LightTimer | undefined;
  /** With a timeout: runs while a request is pending, restarted whenever the oldest one settles. */
  private watchdog: LightTimer | undefined;
  private readonly command: string;
  /** Reads are serialised: a failed read has no stdout, so two in flight could not be told apart. */
  private readChain: Promise<unknown> = Promise.resolve();
  /** The adopted child's preSent request, until the first request takes it or passes it by. */
  private preSent: { key: string; read: boolean; answer: Promise<{ outcome: BatchOutcome; stdout: string[] }> } | undefined;

  constructor(
    readonly tool: Tool,
    readonly ns: NetnsRef | undefined,
    private readonly idleMs: number,
    private readonly onExit: () => void,
    ipDetails = false,
    adopted?: ChildProcess,
    private readonly timeoutMs = 0,
  ) {
    const [file, args] = helperArgv(tool, ns, ipDetails);
    this.command = [file, ...args].join(' ');
    if (adopted) {
      this.child = adopted;
    } else {
      noteSpawn();
      this.child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    }
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => this.out.push(d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => this.err.push(d));
    this.child.stdin!.on('error', () => {});
    this.child.on('error', (e: NodeJS.ErrnoException) => this.fail(spawnError(file, args, e)));
    // 127: a shell that was to exec the helper found no such command (cni/helper-pair.ts).
    this.child.on('exit', (code: number | null) =>
      this.fail(
        code === 127
          ? spawnError(file, args, Object.assign(new Error(`${file}: not found`), { code: 'ENOENT' }))
          : nsGoneError(ns, this.errPending.join('\n') + this.err.partial),
      ),
    );
    this.setRef(false);
    const pre = (adopted as { preSent?: PreSent } | undefined)?.preSent;
    if (pre && pre.lines.length > 0) {
      const answer = this.enqueue(pre.lines, pre.read);
      answer.catch(() => {});
      if (pre.read) this.readChain = answer.catch(() => {});
      this.preSent = { key: pre.lines.join('\n'), read: pre.read, answer };
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private setRef(on: boolean): void {
    holdEventLoop(this.child, on);
  }

  submit(lines: readonly string[], read: boolean): Promise<{ outcome: BatchOutcome; stdout: string[] }> {
    const pre = this.preSent;
    this.preSent = undefined;
    if (pre && pre.read === read && pre.key === lines.join('\n')) return pre.answer;
    if (read) {
      const next = this.readChain.then(() => this.send(lines, true));
      this.readChain = next.catch(() => {});
      return next;
    }
    return this.send(lines, false);
  }

  private send(lines: readonly string[], read: boolean): Promise<{ outcome: BatchOutcome; stdout: string[] }> {
    if (this.dead) return Promise.reject(this.failure ?? nsGoneError(this.ns, 'helper process exited'));
    const answer = this.enqueue(lines, read);
    this.child.stdin!.write(`${lines.join('\n')}\n${SENTINEL[this.tool]}\n`);
    return answer;
  }

  /** Wait for the answer to lines (and the sentinel after them), sent to the helper next. */
  private enqueue(lines: readonly string[], read: boolean): Promise<{ outcome: BatchOutcome; stdout: string[] }> {
    this.idleTimer?.cancel();
    return new Promise((resolve, reject) => {
      const firstLine = this.lineNo + 1;
      this.lineNo += lines.length + 1;
      const p: Pending = {
        lines,
        firstLine,
        sentinelLine: this.lineNo,
        read,
        outcome: new Array(lines.length).fill(null),
        stdout: [],
        sentinelSeen: false,
        resolve,
        reject,
      };
      this.queue.push(p);
      if (this.queue.length === 1) {
        this.setRef(true);
        this.armWatchdog();
      }
    });
  }

  private onStdoutLine(line: string): void {
    if (line.trim() === '') return;
    const head = this.queue.find((p) => p.read && p.stdout.length < p.lines.length - p.outcome.filter((o) => o !== null).length);
    if (head) head.stdout.push(line);
    this.settle();
  }

  private onStderrLine(line: string): void {
    const n = failedLineNumber(line);
    if (n === undefined) {
      if (line.trim() !== '') this.errPending.push(line);
      return;
    }
    const msg = this.errPending.join('\n') || 'failed';
    this.errPending = [];
    const p = this.queue.find((q) => n >= q.firstLine && n <= q.sentinelLine);
    if (!p) return;
    if (n === p.sentinelLine) p.sentinelSeen = true;
    else p.outcome[n - p.firstLine] = msg;
    this.settle();
  }

  /** Resolve finished requests in order: sentinel seen and, for reads, one JSON line per successful read. */
  private settle(): void {
    while (this.queue.length > 0) {
      const p = this.queue[0]!;
      if (!p.sentinelSeen) return;
      const expected = p.read ? p.outcome.filter((o) => o === null).length : 0;
      if (p.stdout.length < expected) return;
      this.queue.shift();
      if (this.queue.length === 0) this.setRef(false);
      this.armWatchdog();
      p.resolve({ outcome: p.outcome, stdout: p.stdout });
    }
    if (this.idleMs > 0 && !this.dead) {
      this.idleTimer?.cancel();
      this.idleTimer = lightTimer(this.idleMs, () => void this.stop());
    }
  }

  /** A helper that does not answer the oldest request within timeoutMs is killed; its requests fail with E_EXEC_TIMEOUT. */
  private armWatchdog(): void {
    if (this.timeoutMs <= 0) return;
    this.watchdog?.cancel();
    this.watchdog = undefined;
    if (this.queue.length === 0 || this.dead) return;
    // Unref'd (host/light-timer.ts): a pending request's pipes keep the process alive meanwhile.
    this.watchdog = lightTimer(this.timeoutMs, () => {
      this.child.kill('SIGKILL');
      this.fail(new ExecError('E_EXEC_TIMEOUT', this.command, this.errPending.join('\n') + this.err.partial, undefined));
    });
  }

  private fail(e: unknown): void {
    if (this.dead) return;
    this.dead = true;
    // Also what a request sent later is told (one queued before reads were serialised, say).
    this.failure = e;
    this.idleTimer?.cancel();
    this.watchdog?.cancel();
    for (const p of this.queue.splice(0)) p.reject(e);
    this.setRef(false);
    this.onExit();
  }

  /** Stopping (idle or released): no new request may be sent to it; the pool starts a new helper. */
  closing = false;

  stop(): Promise<void> {
    this.closing = true;
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        this.fail(nsGoneError(this.ns, 'closed'));
        resolve();
        return;
      }
      this.setRef(true);
      this.child.once('exit', () => resolve());
      this.child.stdin!.end();
      lightTimer(2000, () => this.child.kill('SIGKILL'));
    });
  }
}

export interface CoprocessOptions {
  /** Start `ip` helpers with -details, so that reads asking for details (`-details ...`) are served by the helper. */
  ipDetails?: boolean;
  /** Kill a helper whose oldest request is unanswered after this many ms (E_EXEC_TIMEOUT); 0: no limit. */
  requestTimeoutMs?: number;
  /**
   * A helper already started (e.g. first thing at process start, so that its start overlaps other
   * work) for this tool and namespace, or undefined. It is used only if it was spawned with exactly
   * helperArgv(tool, ns, ipDetails) and piped stdio, and nothing was written to it yet but what its
   * `preSent` says (PreSent); asked once per key.
   */
  adopt?: (tool: Tool, ns: NetnsRef | undefined) => ChildProcess | undefined;
}

/**
 * An adoptable helper: spawned with the expected command line and all three stdio pipes. A pid is
 * what tells a started ChildProcess from one that failed to start; a helper started by another
 * (the tc side of cni/helper-pair.ts) says `pidLate` instead: its pid comes once it runs.
 */
function adoptable(child: ChildProcess | undefined, file: string, args: readonly string[]): child is ChildProcess {
  return (
    child !== undefined &&
    (child.pid !== undefined || (child as { pidLate?: boolean }).pidLate === true) &&
    child.stdin !== null &&
    child.stdout !== null &&
    child.stderr !== null &&
    child.spawnfile === file &&
    child.spawnargs.length === args.length + 1 &&
    args.every((a, i) => child.spawnargs[i + 1] === a)
  );
}

/**
 * Long-lived `ip`/`tc` helpers, one per (tool, namespace), started on first use and stopped after
 * idleMs without requests (a helper holds its namespace alive, so it must not linger).
 */
export class CoprocessNetlink implements Netlink {
  private readonly procs = new Map<string, Coprocess>();
  private readonly reads = new SpawnNetlink();
  private readonly asked = new Set<string>();

  constructor(
    private readonly idleMs = 2000,
    private readonly opts: CoprocessOptions = {},
  ) {}

  /** The pid of the live helper for (tool, ns), if there is one. */
  helperPid(tool: Tool, ns: NetnsRef | undefined): number | undefined {
    const p = this.procs.get(this.key(tool, ns));
    return p && !p.dead && !p.closing ? p.pid : undefined;
  }

  private key(tool: Tool, ns: NetnsRef | undefined): string {
    return `${tool}\0${ns?.path ?? ''}`;
  }

  private proc(tool: Tool, ns: NetnsRef | undefined): Coprocess {
    const k = this.key(tool, ns);
    let p = this.procs.get(k);
    if (!p || p.dead || p.closing) {
      if (ns && !netnsExists(ns)) throw nsGoneError(ns, '');
      const ipDetails = this.opts.ipDetails === true;
      let adopted: ChildProcess | undefined;
      if (this.opts.adopt && !this.asked.has(k)) {
        this.asked.add(k);
        const c = this.opts.adopt(tool, ns);
        const [file, args] = helperArgv(tool, ns, ipDetails);
        if (adoptable(c, file, args) && c.exitCode === null && c.signalCode === null) adopted = c;
        else c?.kill('SIGKILL');
      }
      const created: Coprocess = new Coprocess(
        tool,
        ns,
        this.idleMs,
        () => {
          if (this.procs.get(k) === created) this.procs.delete(k);
        },
        ipDetails,
        adopted,
        this.opts.requestTimeoutMs ?? 0,
      );
      p = created;
      this.procs.set(k, p);
    }
    return p;
  }

  async batch(tool: Tool, ns: NetnsRef | undefined, lines: readonly string[]): Promise<BatchOutcome> {
    if (lines.length === 0) return [];
    checkLines(lines);
    if (ns && !netnsExists(ns)) throw nsGoneError(ns, '');
    return (await this.proc(tool, ns).submit(lines, false)).outcome;
  }

  async json<T>(tool: Tool, ns: NetnsRef | undefined, argv: readonly string[]): Promise<T> {
    if (ns && !netnsExists(ns)) throw nsGoneError(ns, '');
    // A helper started with -details serves reads that ask for details.
    const args = tool === 'ip' && this.opts.ipDetails && (argv[0] === '-details' || argv[0] === '-d') ? argv.slice(1) : argv;
    // `ip -json ... show` with options before the object (e.g. -d) is not a batch line: spawn those.
    if (args.length > 0 && args[0]!.startsWith('-')) return this.reads.json<T>(tool, ns, args);
    // `link show` would leave the batch's address family at AF_PACKET (see SENTINEL); `addr show`
    // prints the same link objects (plus addr_info) and leaves nothing behind.
    const words =
      tool === 'ip' && args[0] === 'link' && (args[1] === 'show' || args[1] === 'list' || args[1] === undefined)
        ? ['addr', 'show', ...args.slice(2)]
        : args;
    const line = words.join(' ');
    checkLines([line]);
    const { outcome, stdout } = await this.proc(tool, ns).submit([line], true);
    if (outcome[0] !== null) throw new NetlinkError(tool, netnsLabel(ns), line, outcome[0]!, codeForKernelMessage(outcome[0]!));
    const text = (stdout[0] ?? '').trim();
    return (text === '' ? [] : JSON.parse(text)) as T;
  }

  async release(ns: NetnsRef | undefined): Promise<void> {
    const stops: Promise<void>[] = [];
    for (const tool of ['ip', 'tc'] as const) {
      const k = this.key(tool, ns);
      const p = this.procs.get(k);
      if (p) {
        this.procs.delete(k);
        stops.push(p.stop());
      }
    }
    await Promise.all(stops);
  }

  async close(): Promise<void> {
    const all = [...this.procs.values()];
    this.procs.clear();
    await Promise.all(all.map((p) => p.stop()));
  }
}

/** Run a batch and throw the first failure. */
export async function batchOrThrow(nl: Netlink, tool: Tool, ns: NetnsRef | undefined, lines: readonly string[]): Promise<void> {
  throwOnFailure(tool, ns, lines, await nl.batch(tool, ns, lines));
}
