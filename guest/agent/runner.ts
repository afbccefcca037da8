/**
 * How the agent runs commands. The apply logic only ever sees a CommandRunner, so the same code
 * runs in the guest (plain `ip`, `mount`) and in host tests (a runner that adds `-n NETNS`).
 * The guest has no npm dependencies: this is node:child_process directly.
 */
import { childProcess } from './builtins.js';

interface CommandResult {
  stdout: string;
  stderr: string;
  /** 128 + signal number when killed by a signal; -1 when it could not be started. */
  exitCode: number;
  timedOut: boolean;
  truncated: boolean;
}

interface CommandOptions {
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
  /** Cap for each of stdout and stderr (bytes); the rest is dropped and `truncated` set. */
  maxOutputBytes?: number;
}

export type CommandRunner = (file: string, args: readonly string[], opts?: CommandOptions) => Promise<CommandResult>;

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

/** Spawns with an argument array (no shell), collects output, kills with SIGKILL at the timeout. Never throws. */
export const spawnRunner: CommandRunner = (file, args, opts = {}) =>
  new Promise((resolve) => {
    const cap = opts.maxOutputBytes ?? 4 * 1024 * 1024;
    let child;
    try {
      child = childProcess().spawn(file, [...args], {
        stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
        cwd: opts.cwd,
      });
    } catch (e) {
      resolve({ stdout: '', stderr: String((e as Error).message), exitCode: -1, timedOut: false, truncated: false });
      return;
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let truncated = false;
    let timedOut = false;
    let settled = false;
    child.stdout!.on('data', (d: Buffer) => {
      if (outLen < cap) out.push(d.subarray(0, cap - outLen));
      if (outLen + d.length > cap) truncated = true;
      outLen += d.length;
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (errLen < cap) err.push(d.subarray(0, cap - errLen));
      if (errLen + d.length > cap) truncated = true;
      errLen += d.length;
    });
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    const finish = (exitCode: number, extraErr = ''): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + extraErr,
        exitCode,
        timedOut,
        truncated,
      });
    };
    child.on('error', (e) => finish(-1, `${file}: ${e.message}`));
    child.on('close', (code, signal) => finish(code ?? (signal ? 128 + (SIGNALS[signal] ?? 0) : -1)));
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
  });
