/**
 * An Ip over a long-lived `ip -details -json -batch -` process. Under TCG every `ip` spawned in the
 * guest costs 100-250 ms; a request written to a running `ip` costs a round trip of ~20 ms, however
 * many lines it has.
 *
 * The process runs without -force, as a spawned `ip -batch` does: it runs its lines in order and, at
 * the first line that fails, prints the kernel's message then "Command failed -:N" (N counting every
 * line it was sent, from 1) on stderr and exits. Each request is its lines followed by a sentinel
 * read that always succeeds and prints one JSON line (reads print one line each, flushed per
 * command), so a request has succeeded once its reads and the sentinel have printed; a failure ends
 * the process, which tells which line failed, and the next request starts a new one. That gives:
 *
 * - batches without force: one request; the lines after a failure are NOT_RUN;
 * - batches with force: after a failed line the rest is sent again to a new process, so every line
 *   runs and each failure is reported against its line;
 * - `ip` exits without a "Command failed" on a malformed argument (iproute2 calls exit() in its
 *   parsers): the request fails with E_NETLINK and its stderr, as a spawned `ip -batch` would.
 *
 * Reads that meet a process that has died are retried once on a new one (they have no effect to
 * repeat). After start(), a process that ended is replaced at once, so that the next request finds
 * one running. Requests go one at a time.
 *
 * `ip` keeps some globals between batch lines: `link show` sets the preferred family to AF_PACKET
 * for good, after which `addr show` prints no addresses. So `link` reads are spawned, and the
 * sentinel is a route read (which keeps its family in a local).
 *
 * Self-contained (node:child_process only): it is bundled into the guest agent.
 */
import type { ChildProcess } from 'node:child_process';
import { childProcess } from './builtins.js';
import { failedLineNumber, TextLines } from '../../host/batch-output.js';
import { holdEventLoop } from '../../host/child-ref.js';
import { makeIp, NOT_RUN, type Ip, type LineOutcome } from './ip.js';
import { AgentError } from './protocol.js';
import { spawnRunner, type CommandRunner } from './runner.js';

/** Always succeeds, prints one line ("[]": a table nothing uses), changes nothing. */
const SENTINEL = 'route show table 4294967294';
/** Global options the process is started with; json() strips them from the front of its arguments. */
const BUILT_IN = new Set(['-details', '-d', '-json', '-j']);

export interface CoprocessIpOptions {
  /** The ip binary ("ip"). */
  file?: string;
  /** Options before the process's own (e.g. ["-n", "krt-ns"] in host tests). */
  prefix?: readonly string[];
  /** For messages ("guest", "netns krt-x"). */
  label?: string;
  /** Per request; the process is killed when a request takes longer. */
  timeoutMs?: number;
  /** Runs reads whose arguments carry other global options (e.g. -4): one spawn each. */
  runner?: CommandRunner;
}

export interface CoprocessIp extends Ip {
  /** Start the process now (so that the first request does not pay for the spawn). */
  start(): void;
  /** Stop the process (closing its stdin); later requests start a new one. */
  close(): Promise<void>;
  /** The pid of the live process, if any (tests). */
  readonly pid: number | undefined;
}

interface Request {
  firstLine: number;
  lineCount: number;
  /** stdout lines that complete the request: one per read, and the sentinel's. */
  expected: number;
  stdout: string[];
  /** Index of the line that failed (the process then exits), -1 while none has. */
  failedAt: number;
  message: string;
  resolve: (v: Reply) => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
}

/** A request's end: every line ran (failedAt -1), or line failedAt failed with message and the rest did not run. */
interface Reply {
  failedAt: number;
  message: string;
  /** What the reads printed, one line each. */
  stdout: string[];
}

/** Marks a failure caused by the process ending on its own (a read may be retried on a new one). */
class ProcessEnded extends AgentError {}

function checkLine(l: string): void {
  // A line break would split the line; a trailing backslash would join it with the next (ip's
  // line continuation): either would shift the line numbers the replies are matched by.
  if (/[\n\r\0]/.test(l) || /\\\s*$/.test(l))
    throw new AgentError('E_INVALID_ARGUMENT', `ip batch line contains a line break or ends with a backslash: ${JSON.stringify(l)}`);
}

class IpProcess {
  private readonly child: ChildProcess;
  private lineNo = 0;
  private cur: Request | undefined;
  private readonly out = new TextLines((l) => this.onStdoutLine(l));
  private readonly err = new TextLines((l) => this.onStderrLine(l));
  private errPending: string[] = [];
  private timedOut = false;
  /** Set once a line failed (ip is exiting) or the process has exited: it takes no more requests. */
  ending = false;
  dead = false;
  readonly exited: Promise<void>;

  constructor(
    file: string,
    args: readonly string[],
    private readonly label: string,
  ) {
    this.child = childProcess().spawn(file, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => this.out.push(d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => this.err.push(d));
    this.child.stdin!.on('error', () => {
      /* the close handler reports */
    });
    let exited!: () => void;
    this.exited = new Promise((r) => {
      exited = r;
    });
    this.child.on('error', (e) => {
      this.end(`cannot run ${file}: ${e.message}`);
      exited();
    });
    this.child.on('close', (code, signal) => {
      this.end(this.timedOut ? 'timed out' : `exited (${signal ?? `code ${code}`})`);
      exited();
    });
    this.setRef(false);
  }

  get pid(): number | undefined {
    return this.dead ? undefined : this.child.pid;
  }

  private setRef(on: boolean): void {
    holdEventLoop(this.child, on);
  }

  /** Send lines, of which `reads` print (one line each). */
  request(lines: readonly string[], reads: number, timeoutMs: number): Promise<Reply> {
    if (this.ending) return Promise.reject(new ProcessEnded('E_NETLINK', `ip coprocess (${this.label}) has exited`));
    if (this.cur) return Promise.reject(new AgentError('E_INTERNAL', 'ip coprocess: a request is already in flight'));
    return new Promise((resolve, reject) => {
      const req: Request = {
        firstLine: this.lineNo + 1,
        lineCount: lines.length,
        expected: reads + 1,
        stdout: [],
        failedAt: -1,
        message: '',
        resolve,
        reject,
      };
      this.lineNo += lines.length + 1;
      req.timer = setTimeout(() => {
        this.timedOut = true;
        this.child.kill('SIGKILL');
      }, timeoutMs);
      this.cur = req;
      this.setRef(true);
      this.child.stdin!.write(`${lines.join('\n')}\n${SENTINEL}\n`);
    });
  }

  private onStdoutLine(line: string): void {
    const req = this.cur;
    if (!req || line.trim() === '') return;
    req.stdout.push(line);
    if (req.failedAt < 0 && req.stdout.length === req.expected) {
      this.cur = undefined;
      clearTimeout(req.timer);
      this.setRef(false);
      req.resolve({ failedAt: -1, message: '', stdout: req.stdout.slice(0, -1) });
    }
  }

  private onStderrLine(line: string): void {
    const n = failedLineNumber(line);
    if (n === undefined) {
      if (line.trim() !== '') this.errPending.push(line.trim());
      return;
    }
    const idx = n - (this.cur?.firstLine ?? 0);
    const msg = this.errPending.join('\n') || 'failed';
    this.errPending = [];
    // ip exits after a failed line; the request ends when it has (its reads' output all read).
    this.ending = true;
    if (this.cur && idx >= 0 && idx < this.cur.lineCount) {
      this.cur.failedAt = idx;
      this.cur.message = msg;
    } else {
      this.errPending.push(`the sentinel "${SENTINEL}" failed: ${msg}`);
    }
  }

  private end(why: string): void {
    if (this.dead) return;
    this.dead = true;
    this.ending = true;
    const req = this.cur;
    this.cur = undefined;
    this.setRef(false);
    if (!req) return;
    clearTimeout(req.timer);
    if (req.failedAt >= 0) {
      req.resolve({ failedAt: req.failedAt, message: req.message, stdout: req.stdout });
      return;
    }
    const stderr = [...this.errPending, this.err.partial.trim()].filter((s) => s !== '').join('\n');
    const message = `ip -batch (${this.label}) failed: ${stderr || why}${stderr && this.timedOut ? ' (timed out)' : ''}`;
    // A timed-out request is not retried (it would only wait as long again).
    req.reject(this.timedOut ? new AgentError('E_NETLINK', message) : new ProcessEnded('E_NETLINK', message));
  }

  stop(): Promise<void> {
    if (this.dead) return Promise.resolve();
    this.ending = true;
    this.setRef(true);
    this.child.stdin!.end();
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    killer.unref();
    return this.exited.finally(() => clearTimeout(killer));
  }
}

export function makeCoprocessIp(opts: CoprocessIpOptions = {}): CoprocessIp {
  const file = opts.file ?? 'ip';
  const prefix = opts.prefix ?? [];
  const label = opts.label ?? 'guest';
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const spawned = makeIp(opts.runner ?? spawnRunner, prefix, label, file);
  let proc: IpProcess | undefined;
  let warm = false;
  let chain: Promise<unknown> = Promise.resolve();

  const live = (): IpProcess => {
    if (!proc || proc.ending) proc = new IpProcess(file, [...prefix, '-details', '-json', '-batch', '-'], label);
    return proc;
  };
  /** One request at a time, in call order; after start(), a process that ended is replaced at once. */
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn).finally(() => {
      if (warm) live();
    });
    chain = next.catch(() => {});
    return next;
  };

  return {
    label,
    get pid() {
      return proc?.pid;
    },
    start() {
      warm = true;
      live();
    },
    async close() {
      warm = false;
      await exclusive(async () => {
        const p = proc;
        proc = undefined;
        await p?.stop();
      });
    },
    async json<T>(args: readonly string[]): Promise<T> {
      let i = 0;
      while (i < args.length && BUILT_IN.has(args[i]!)) i++;
      const rest = args.slice(i);
      // Other global options (-4, -6, ...) cannot be given on a batch line; `link` (or an abbreviation)
      // would change the process's state for the reads after it (see the header).
      if (rest.length === 0 || rest[0]!.startsWith('-') || 'link'.startsWith(rest[0]!)) return spawned.json<T>(args);
      const line = rest.join(' ');
      checkLine(line);
      return exclusive(async () => {
        let r: Reply;
        try {
          r = await live().request([line], 1, timeoutMs);
        } catch (e) {
          if (!(e instanceof ProcessEnded)) throw e;
          r = await live().request([line], 1, timeoutMs);
        }
        if (r.failedAt >= 0) throw new AgentError('E_NETLINK', `ip ${args.join(' ')} (${label}): ${r.message}`);
        const text = (r.stdout[0] ?? '').trim();
        return (text === '' ? [] : JSON.parse(text)) as T;
      });
    },
    async batch(lines: readonly string[], o: { force?: boolean } = {}): Promise<LineOutcome[]> {
      if (lines.length === 0) return [];
      lines.forEach(checkLine);
      return exclusive(async () => {
        const outcome: LineOutcome[] = new Array<LineOutcome>(lines.length).fill(null);
        let from = 0;
        while (from < lines.length) {
          const r = await live().request(lines.slice(from), 0, timeoutMs);
          if (r.failedAt < 0) break;
          const failed = from + r.failedAt;
          outcome[failed] = r.message;
          if (!o.force) {
            outcome.fill(NOT_RUN, failed + 1);
            break;
          }
          from = failed + 1;
        }
        return outcome;
      });
    },
  };
}
