/**
 * An Ip over one long-lived `ip -force -details -json -batch -` process. Under TCG every `ip`
 * spawned in the guest costs 100-200 ms; a line written to a running `ip` costs a few.
 *
 * Protocol with the process: each request is its lines followed by a sentinel line that always fails
 * at once without side effect (`addr show dev a/b`, an invalid name). `ip` numbers the lines it reads
 * from 1 and reports a failure as its messages then "Command failed -:N" on stderr, so the sentinel's
 * report marks the end of the request and every other report names its failed line. Reads print one
 * JSON line each on stdout (flushed per command), so a read request is complete once the sentinel is
 * seen and each read that did not fail has printed its line.
 *
 * Requests go one at a time. Batches without force run one line per request (a failed line stops
 * the rest, as `ip -batch` without -force would). `ip` exits on a malformed argument (iproute2 calls
 * exit() in its parsers): the request in flight fails with E_NETLINK and its stderr, like a spawned
 * `ip -batch` that exits without a "Command failed" line, and the next request starts a new process.
 * Reads that meet a dead process are retried once on a new one (they have no effect to repeat).
 *
 * Self-contained (node:child_process only): it is bundled into the guest agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { makeIp, NOT_RUN, type Ip, type LineOutcome } from './ip.js';
import { AgentError } from './protocol.js';
import { spawnRunner, type CommandRunner } from './runner.js';

/**
 * Always fails at once (a device name may not contain "/"), prints nothing on stdout, changes nothing:
 * not in the kernel, and not in ip's own state either. `ip` keeps globals between batch lines, and
 * `link show` sets the preferred family to AF_PACKET for good, after which `addr show` in the same
 * process prints no addresses; so the sentinel is an `addr show`, and `link` reads are spawned.
 */
const SENTINEL = 'addr show dev a/b';
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
  lines: readonly string[];
  read: boolean;
  firstLine: number;
  sentinelLine: number;
  outcome: LineOutcome[];
  stdout: string[];
  sentinelSeen: boolean;
  resolve: (v: { outcome: LineOutcome[]; stdout: string[] }) => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
}

/** Marks a failure caused by the process ending (a read may be retried on a new one). */
class ProcessEnded extends AgentError {}

function checkLine(l: string): void {
  // A line break would split the line; a trailing backslash would join it with the next (ip's
  // line continuation): either would shift the line numbers the replies are matched by.
  if (/[\n\r\0]/.test(l) || /\\\s*$/.test(l)) throw new AgentError('E_INVALID_ARGUMENT', `ip batch line contains a line break or ends with a backslash: ${JSON.stringify(l)}`);
}

class IpProcess {
  private readonly child: ChildProcess;
  private lineNo = 0;
  private cur: Request | undefined;
  private outBuf = '';
  private errBuf = '';
  private errPending: string[] = [];
  private timedOut = false;
  dead = false;

  constructor(file: string, args: readonly string[], private readonly label: string) {
    this.child = spawn(file, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => this.onStdout(d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => this.onStderr(d));
    this.child.stdin!.on('error', () => { /* the close handler reports */ });
    this.child.on('error', (e) => this.end(`cannot run ${file}: ${e.message}`));
    this.child.on('close', (code, signal) => this.end(this.timedOut ? 'timed out' : `exited (${signal ?? `code ${code}`})`));
    this.setRef(false);
  }

  get pid(): number | undefined {
    return this.dead ? undefined : this.child.pid;
  }

  /** Hold the event loop only while a request is in flight (an idle helper never keeps a process alive). */
  private setRef(on: boolean): void {
    const m = on ? 'ref' : 'unref';
    this.child[m]();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) (s as unknown as Record<string, (() => void) | undefined>)[m]?.call(s);
  }

  request(lines: readonly string[], read: boolean, timeoutMs: number): Promise<{ outcome: LineOutcome[]; stdout: string[] }> {
    if (this.dead) return Promise.reject(new ProcessEnded('E_NETLINK', `ip coprocess (${this.label}) has exited`));
    if (this.cur) return Promise.reject(new AgentError('E_INTERNAL', 'ip coprocess: a request is already in flight'));
    return new Promise((resolve, reject) => {
      const firstLine = this.lineNo + 1;
      this.lineNo += lines.length + 1;
      const req: Request = { lines, read, firstLine, sentinelLine: this.lineNo, outcome: new Array<LineOutcome>(lines.length).fill(null), stdout: [], sentinelSeen: false, resolve, reject };
      req.timer = setTimeout(() => {
        this.timedOut = true;
        this.child.kill('SIGKILL');
      }, timeoutMs);
      this.cur = req;
      this.setRef(true);
      this.child.stdin!.write(lines.join('\n') + '\n' + SENTINEL + '\n');
    });
  }

  private onStdout(d: string): void {
    this.outBuf += d;
    let i;
    while ((i = this.outBuf.indexOf('\n')) >= 0) {
      const line = this.outBuf.slice(0, i);
      this.outBuf = this.outBuf.slice(i + 1);
      if (line.trim() === '') continue;
      if (this.cur?.read) this.cur.stdout.push(line);
      this.settle();
    }
  }

  private onStderr(d: string): void {
    this.errBuf += d;
    let i;
    while ((i = this.errBuf.indexOf('\n')) >= 0) {
      const line = this.errBuf.slice(0, i);
      this.errBuf = this.errBuf.slice(i + 1);
      const m = /^Command failed -:(\d+)\s*$/.exec(line);
      if (!m) {
        if (line.trim() !== '') this.errPending.push(line.trim());
        continue;
      }
      const n = Number(m[1]);
      const msg = this.errPending.join('\n') || 'failed';
      this.errPending = [];
      const req = this.cur;
      if (!req || n < req.firstLine || n > req.sentinelLine) continue;
      if (n === req.sentinelLine) req.sentinelSeen = true;
      else req.outcome[n - req.firstLine] = msg;
      this.settle();
    }
  }

  private settle(): void {
    const req = this.cur;
    if (!req || !req.sentinelSeen) return;
    const expected = req.read ? req.outcome.filter((o) => o === null).length : 0;
    if (req.stdout.length < expected) return;
    this.cur = undefined;
    clearTimeout(req.timer);
    this.setRef(false);
    req.resolve({ outcome: req.outcome, stdout: req.stdout });
  }

  private end(why: string): void {
    if (this.dead) return;
    this.dead = true;
    const req = this.cur;
    this.cur = undefined;
    this.setRef(false);
    if (!req) return;
    clearTimeout(req.timer);
    const stderr = [...this.errPending, this.errBuf.trim()].filter((s) => s !== '').join('\n');
    const message = `ip -batch (${this.label}) failed: ${stderr || why}${stderr && this.timedOut ? ' (timed out)' : ''}`;
    // A timed-out request is not retried (it would only wait as long again).
    req.reject(this.timedOut ? new AgentError('E_NETLINK', message) : new ProcessEnded('E_NETLINK', message));
  }

  stop(): Promise<void> {
    if (this.dead) return Promise.resolve();
    return new Promise((resolve) => {
      this.setRef(true);
      this.child.once('close', () => resolve());
      this.child.stdin!.end();
      setTimeout(() => this.child.kill('SIGKILL'), 2000).unref();
    });
  }
}

export function makeCoprocessIp(opts: CoprocessIpOptions = {}): CoprocessIp {
  const file = opts.file ?? 'ip';
  const prefix = opts.prefix ?? [];
  const label = opts.label ?? 'guest';
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const spawned = makeIp(opts.runner ?? spawnRunner, prefix, label, file);
  let proc: IpProcess | undefined;
  let chain: Promise<unknown> = Promise.resolve();

  const live = (): IpProcess => {
    if (!proc || proc.dead) proc = new IpProcess(file, [...prefix, '-force', '-details', '-json', '-batch', '-'], label);
    return proc;
  };
  /** One request at a time, in call order. */
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn);
    chain = next.catch(() => {});
    return next;
  };

  return {
    label,
    get pid() {
      return proc?.pid;
    },
    start() {
      live();
    },
    async close() {
      const p = proc;
      proc = undefined;
      await exclusive(async () => p?.stop());
    },
    async json<T>(args: readonly string[]): Promise<T> {
      let i = 0;
      while (i < args.length && BUILT_IN.has(args[i]!)) i++;
      const rest = args.slice(i);
      // Other global options (-4, -6, ...) cannot be given on a batch line; `link` (or an abbreviation)
      // would change the process's state for the reads after it (see SENTINEL).
      if (rest.length === 0 || rest[0]!.startsWith('-') || 'link'.startsWith(rest[0]!)) return spawned.json<T>(args);
      const line = rest.join(' ');
      checkLine(line);
      return exclusive(async () => {
        let r;
        try {
          r = await live().request([line], true, timeoutMs);
        } catch (e) {
          if (!(e instanceof ProcessEnded)) throw e;
          r = await live().request([line], true, timeoutMs);
        }
        if (r.outcome[0] !== null) throw new AgentError('E_NETLINK', `ip ${args.join(' ')} (${label}): ${r.outcome[0]}`);
        const text = (r.stdout[0] ?? '').trim();
        return (text === '' ? [] : JSON.parse(text)) as T;
      });
    },
    async batch(lines: readonly string[], o: { force?: boolean } = {}): Promise<LineOutcome[]> {
      if (lines.length === 0) return [];
      lines.forEach(checkLine);
      return exclusive(async () => {
        if (o.force) return (await live().request(lines, false, timeoutMs)).outcome;
        const outcome: LineOutcome[] = new Array<LineOutcome>(lines.length).fill(null);
        for (let i = 0; i < lines.length; i++) {
          const r = await live().request([lines[i]!], false, timeoutMs);
          outcome[i] = r.outcome[0] ?? null;
          if (outcome[i] !== null) {
            for (let j = i + 1; j < lines.length; j++) outcome[j] = NOT_RUN;
            break;
          }
        }
        return outcome;
      });
    },
  };
}
