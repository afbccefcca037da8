import { spawn } from 'node:child_process';

/**
 * What host/exec.ts runs commands with: the subset of `execa` it uses, on node:child_process, with
 * the same result fields (stdout, stderr, exitCode, timedOut, failed, code, originalMessage).
 * Loading execa costs about 45 ms per process bundled and minified, 0.1-0.2 s unbundled under load,
 * more than Node's own start; `sandbox up` paid it in the CLI and again in the supervisor, and
 * kata-cni in every call. Options outside the subset throw, so a future use that needs more fails
 * loudly instead of behaving differently. test/host/execa-lite-matches-execa-for-the-host-exec-calls
 * runs both side by side.
 */
export interface LiteOptions {
  input?: string | undefined;
  timeout?: number | undefined;
  killSignal?: NodeJS.Signals | undefined;
  reject?: boolean | undefined;
  stripFinalNewline?: boolean | undefined;
  env?: Record<string, string | undefined> | undefined;
  cwd?: string | undefined;
  stdin?: 'ignore' | 'pipe' | undefined;
}

export interface LiteResult {
  command: string;
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
  signal: string | undefined;
  timedOut: boolean;
  failed: boolean;
  code?: string;
  originalMessage?: string;
}

const SUPPORTED = new Set(['input', 'timeout', 'killSignal', 'reject', 'stripFinalNewline', 'env', 'cwd', 'stdin']);

function strip(s: string, on: boolean): string {
  if (!on) return s;
  return s.endsWith('\r\n') ? s.slice(0, -2) : s.endsWith('\n') ? s.slice(0, -1) : s;
}

export function execa(file: string, args: readonly string[] = [], opts: LiteOptions = {}): Promise<LiteResult> {
  for (const k of Object.keys(opts)) {
    if (!SUPPORTED.has(k)) throw new TypeError(`execa-lite (host/exec.ts): option "${k}" is not supported`);
  }
  const command = [file, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const stdinMode = opts.stdin ?? (opts.input !== undefined ? 'pipe' : 'pipe');
    const child = spawn(file, [...args], {
      stdio: [stdinMode, 'pipe', 'pipe'],
      // execa's default extendEnv: the given variables on top of process.env.
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    let spawnError: NodeJS.ErrnoException | undefined;
    const timer =
      opts.timeout && opts.timeout > 0
        ? setTimeout(() => {
            timedOut = true;
            child.kill(opts.killSignal ?? 'SIGTERM');
          }, opts.timeout)
        : undefined;
    if (child.stdin) {
      child.stdin.on('error', () => {}); // EPIPE when the child exits without reading
      child.stdin.end(opts.input ?? '');
    }
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e;
    });
    child.on('close', (exitCode: number | null, signal: NodeJS.Signals | null) => {
      if (timer) clearTimeout(timer);
      const stripOn = opts.stripFinalNewline !== false;
      const r: LiteResult = {
        command,
        stdout: strip(Buffer.concat(out).toString('utf8'), stripOn),
        stderr: strip(Buffer.concat(err).toString('utf8'), stripOn),
        exitCode: spawnError ? undefined : (exitCode ?? undefined),
        signal: signal ?? undefined,
        timedOut,
        failed: spawnError !== undefined || timedOut || exitCode !== 0,
      };
      if (spawnError) {
        if (spawnError.code !== undefined) r.code = spawnError.code;
        r.originalMessage = spawnError.message;
      }
      if (r.failed && opts.reject !== false) {
        reject(Object.assign(new Error(`Command failed: ${command}${r.stderr ? `\n${r.stderr}` : ''}`), r));
        return;
      }
      resolve(r);
    });
  });
}
