/**
 * One `exec` in the guest's root environment, without a transport: the agent's streaming process
 * calls (ExecProcess with container_id "", the stdio pumps of agent/process-io.ts, WaitProcess),
 * with stdin forwarded, output streamed as it comes (byte-exact), a pty with its window size when
 * asked for, signals, an optional timeout, and the process killed when the caller goes away.
 * The supervisor serves it over the exec stream (supervisor/exec-stream.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { KataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import type { AgentClient, OciProcess } from '../agent/client.js';
import { ProcessIo } from '../agent/process-io.js';

export interface ExecRequest {
  argv: string[];
  /** A pty in the guest (stdout and stderr merged, as with any terminal). */
  terminal: boolean;
  rows?: number;
  cols?: number;
  /** Extra "KEY=value" entries. */
  env?: string[];
  cwd?: string;
  /** SIGKILL after this many ms (the result says timedOut). */
  timeoutMs?: number;
}

export interface ExecChannel {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  /** Aborted when the caller is gone: the process is killed. */
  closed: AbortSignal;
  started(info: { execId: string; pid: number }): void;
}

export interface ExecControl {
  resize(rows: number, cols: number): void;
  signal(sig: number): void;
}

export interface ExecOutcome {
  status: number;
  timedOut: boolean;
}

const SIGKILL = 9;
const MAX_TIMEOUT_MS = 24 * 3600 * 1000;

/** Checks a request from the wire (the START frame); E_INVALID_ARGUMENT names the field. */
export function execRequest(p: Record<string, unknown>): ExecRequest {
  const bad = (m: string): KataError => new KataError('E_INVALID_ARGUMENT', `exec: ${m}`);
  const { argv, terminal, rows, cols, env, cwd, timeoutMs } = p;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string'))
    throw bad('argv must be a non-empty array of strings');
  if (terminal !== undefined && typeof terminal !== 'boolean') throw bad('terminal must be a boolean');
  const dim = (v: unknown, n: string): number | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) throw bad(`${n} must be an integer from 0 to 65535`);
    return v;
  };
  if (env !== undefined && (!Array.isArray(env) || !env.every((e) => typeof e === 'string' && e.indexOf('=') > 0)))
    throw bad('env must be an array of "KEY=value" strings');
  if (cwd !== undefined && (typeof cwd !== 'string' || !cwd.startsWith('/'))) throw bad('cwd must be an absolute path');
  if (
    timeoutMs !== undefined &&
    (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS)
  )
    throw bad(`timeoutMs must be a positive integer up to ${MAX_TIMEOUT_MS}`);
  const r = dim(rows, 'rows');
  const c = dim(cols, 'cols');
  return {
    argv: argv as string[],
    terminal: terminal === true,
    ...(r !== undefined ? { rows: r } : {}),
    ...(c !== undefined ? { cols: c } : {}),
    ...(env ? { env: env as string[] } : {}),
    ...(cwd ? { cwd: cwd as string } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs: timeoutMs as number } : {}),
  };
}

function ociProcess(req: ExecRequest): OciProcess {
  const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', ...(req.env ?? [])];
  return {
    args: req.argv,
    cwd: req.cwd ?? '/',
    env,
    terminal: req.terminal,
    ...(req.terminal && req.rows && req.cols ? { consoleSize: { height: req.rows, width: req.cols } } : {}),
  };
}

/**
 * Run the request and relay it through the channel; resolves with the exit status (128 + N for
 * signal N) once every byte of output was written to the channel. `control` is handed out as soon
 * as the process runs (resize, signal).
 */
export async function runExec(
  agent: AgentClient,
  req: ExecRequest,
  ch: ExecChannel,
  log: Logger,
  onControl: (c: ExecControl) => void = () => {},
): Promise<ExecOutcome> {
  const execId = `exec-${randomBytes(6).toString('hex')}`;
  const { pid } = await agent.execProcess('', execId, ociProcess(req));
  ch.started({ execId, pid });
  const warn = (what: string) => (e: unknown) => log.debug({ execId, err: (e as Error).message }, `exec ${what} failed`);
  const kill = (): void => void agent.signalProcess('', execId, SIGKILL).catch(warn('kill'));
  onControl({
    resize: (rows, cols) => {
      if (req.terminal) void agent.ttyWinResize('', execId, rows, cols).catch(warn('resize'));
    },
    signal: (sig) => void agent.signalProcess('', execId, sig).catch(warn('signal')),
  });
  const io = new ProcessIo(agent, '', execId, { stdin: ch.stdin, stdout: ch.stdout, ...(req.terminal ? {} : { stderr: ch.stderr }) });
  // Stdin may fail once the process is gone (its pipe closed): that is not the exec's failure.
  io.input.catch(warn('stdin'));
  let timedOut = false;
  const timer = req.timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        kill();
      }, req.timeoutMs)
    : undefined;
  const onClosed = (): void => kill();
  ch.closed.addEventListener('abort', onClosed, { once: true });
  try {
    const status = await agent.waitProcess('', execId, { signal: ch.closed });
    await io.output;
    return { status, timedOut };
  } finally {
    if (timer) clearTimeout(timer);
    ch.closed.removeEventListener('abort', onClosed);
    io.cancel('exec finished');
  }
}
