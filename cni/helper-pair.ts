import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { type Reader, RawChild, type Writer } from './raw-spawn.js';
import { UnreapedChild } from './unreaped-child.js';

/**
 * Two helper processes from ONE spawn. Each libuv spawn forks the whole Node process (40 MiB) and
 * waits for the child's exec, about 2-3 ms of the plugin's wall time each, more at load; a fork of
 * a small shell costs a fraction of that. So the plugin spawns `/bin/sh -c SCRIPT` with six pipes
 * (fds 0-2 for the main helper, 3-5 for the side helper), and the shell
 *  - forks a subshell that moves fds 3-5 to its 0-2 (holding none of the main helper's pipes),
 *    prints its own pid (from /proc/self/stat, read with IFS set; dash has no $BASHPID) as the
 *    first line of its stdout, waits for one line ("go") on its stdin, then execs the side helper:
 *    the side helper starts only when the plugin wants it (see early-helpers.ts for why), and its
 *    pid is that line;
 *  - execs the main helper with fds 3-5 closed: the RawChild's pid is the main helper's.
 *
 * The side helper is then no child of the plugin (it is one of the main helper's), so libuv gives
 * no pid or exit status for it. SideChild offers what CoprocessNetlink (host/netlink.ts) uses of a
 * ChildProcess all the same: its pid once the first line came (`pidLate`), spawnfile/spawnargs (the
 * side helper's command line, as adoption checks), 'exit' when its stdout reaches EOF (it exited:
 * nobody else holds that pipe), kill by pid, but only after /proc/<pid>/cmdline shows the process
 * is still the side helper or its subshell (a pid whose process is gone may be another's by then).
 */
export type Argv = readonly [string, readonly string[]];

const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
const command = ([file, args]: Argv): string => [file, ...args].map(quote).join(' ');

/** The shell script of a pair (see above). */
function pairScript(main: Argv, side: Argv): string {
  return (
    `(exec <&3 >&4 2>&5 3<&- 4>&- 5>&-; IFS=' ' read -r pid rest </proc/self/stat && echo "$pid" && read -r go && exec ${command(side)}) & ` +
    `exec ${command(main)} 3<&- 4>&- 5>&-`
  );
}

/** The side helper's stdout without its first line (the pid), which goes to onFirst. */
class AfterFirstLine extends EventEmitter {
  private head: Buffer | undefined = Buffer.alloc(0);
  private decoder: TextDecoder | undefined;

  constructor(
    private readonly inner: Reader,
    onFirst: (line: string) => void,
    onEnd: () => void,
  ) {
    super();
    inner.on('data', (chunk: Buffer) => {
      let d = chunk;
      if (this.head) {
        const all = Buffer.concat([this.head, d]);
        const nl = all.indexOf(10);
        if (nl < 0) {
          this.head = all;
          return;
        }
        this.head = undefined;
        onFirst(all.subarray(0, nl).toString('latin1'));
        d = all.subarray(nl + 1);
        if (d.length === 0) return;
      }
      this.emit('data', this.decoder ? this.decoder.decode(d, { stream: true }) : d);
    });
    inner.on('end', () => {
      this.emit('end');
      onEnd();
    });
  }

  setEncoding(_enc: 'utf8'): this {
    this.decoder = new TextDecoder('utf-8');
    return this;
  }

  ref(): void {
    this.inner.ref();
  }

  unref(): void {
    this.inner.unref();
  }
}

export class SideChild extends UnreapedChild {
  /** Known once the side's first line came; CoprocessNetlink adopts such a child before that. */
  pid: number | undefined;
  readonly pidLate = true;
  readonly stdout: AfterFirstLine;
  private pendingSignal: NodeJS.Signals | undefined;
  private readonly shown: readonly Buffer[];

  constructor(
    readonly spawnfile: string,
    readonly spawnargs: readonly string[],
    shellArgv: readonly string[],
    readonly stdin: Writer,
    stdout: Reader,
    readonly stderr: Reader,
  ) {
    super();
    const cmdline = (argv: readonly string[]): Buffer => Buffer.from(`${argv.join('\0')}\0`);
    this.shown = [cmdline(spawnargs), cmdline(shellArgv)];
    this.stdout = new AfterFirstLine(
      stdout,
      (l) => this.onPid(l),
      // Its status is not ours to know (no child of this process): 0 unless a signal was sent.
      () => this.exited(),
    );
  }

  /** Let the side helper start (the subshell waits for this line). */
  go(): void {
    this.stdin.write('go\n');
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.hasExited) return false;
    if (this.pid === undefined) {
      // Not known yet: sent when it is; EOF on its stdin ends it meanwhile in any case.
      this.pendingSignal = signal;
      this.stdin.end();
      return true;
    }
    return this.signal(signal);
  }

  private signal(signal: NodeJS.Signals): boolean {
    return this.pid !== undefined && this.isOurs(this.pid) && this.signalPid(this.pid, signal);
  }

  /** The process with this pid is still the side helper or the subshell that becomes it. */
  private isOurs(pid: number): boolean {
    try {
      const now = readFileSync(`/proc/${pid}/cmdline`);
      return this.shown.some((b) => b.equals(now));
    } catch {
      return false;
    }
  }

  private onPid(line: string): void {
    const pid = Number(line.trim());
    if (!Number.isInteger(pid) || pid <= 1) return;
    this.pid = pid;
    if (this.pendingSignal) this.signal(this.pendingSignal);
  }
}

export interface HelperPair {
  main: RawChild;
  side: SideChild;
}

/** Start main at once and side on side.go(), from one spawn of a shell; undefined: not started (spawn them alone). */
export function spawnPair(main: Argv, side: Argv, shell = '/bin/sh'): HelperPair | undefined {
  const script = pairScript(main, side);
  const shellArgs = ['-c', script];
  const raw = RawChild.spawn(shell, shellArgs, { extra: 3, shownAs: main });
  if (!raw?.extra) return undefined;
  const [w, r, e] = raw.extra;
  return { main: raw, side: new SideChild(side[0], [side[0], ...side[1]], [shell, ...shellArgs], w, r, e) };
}
