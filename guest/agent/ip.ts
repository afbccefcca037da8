/**
 * `ip` as the agent uses it: reads with `-json`, writes as one `-batch -` per operation (one process
 * per call matters under TCG, where every spawn costs tens of milliseconds).
 */
import { parseBatchStderr, type LineOutcome } from '../../host/batch-output.js';
import { AgentError } from './protocol.js';
import type { CommandRunner } from './runner.js';

/** For each batch line: null when it succeeded, the kernel's message when it failed, NOT_RUN when an earlier line stopped the batch. */
export type { LineOutcome };
export const NOT_RUN = 'not run: an earlier line failed';

export interface Ip {
  json<T>(args: readonly string[]): Promise<T>;
  /**
   * Runs the lines in order. With force, every line runs and each failure is reported against its
   * line; without it, the first failure stops the batch (later lines are NOT_RUN).
   */
  batch(lines: readonly string[], opts?: { force?: boolean }): Promise<LineOutcome[]>;
  /** What the ip commands are run against, for messages ("guest", "netns krt-x"). */
  readonly label: string;
}

/** An Ip over a runner; `prefix` goes before every argument list (e.g. ["-n", "krt-ns"] in host tests). */
export function makeIp(runner: CommandRunner, prefix: readonly string[] = [], label = 'guest', file = 'ip'): Ip {
  return {
    label,
    async json<T>(args: readonly string[]): Promise<T> {
      const r = await runner(file, [...prefix, '-json', ...args], { timeoutMs: 20_000 });
      if (r.exitCode !== 0)
        throw new AgentError('E_NETLINK', `ip ${args.join(' ')} (${label}): ${r.stderr.trim() || `exit ${r.exitCode}`}`);
      const text = r.stdout.trim();
      return (text === '' ? [] : JSON.parse(text)) as T;
    },
    async batch(lines: readonly string[], opts: { force?: boolean } = {}): Promise<LineOutcome[]> {
      if (lines.length === 0) return [];
      for (const l of lines)
        if (/[\n\r\0]/.test(l)) throw new AgentError('E_INVALID_ARGUMENT', `ip batch line contains a line break: ${JSON.stringify(l)}`);
      const r = await runner(file, [...prefix, ...(opts.force ? ['-force'] : []), '-batch', '-'], {
        input: `${lines.join('\n')}\n`,
        timeoutMs: 20_000,
      });
      const { outcome, rest } = parseBatchStderr(r.stderr, lines.length);
      if (r.exitCode !== 0 && outcome.every((o) => o === null)) {
        throw new AgentError('E_NETLINK', `ip -batch (${label}) failed: ${rest || r.stderr.trim() || `exit ${r.exitCode}`}`);
      }
      if (!opts.force) {
        const first = outcome.findIndex((o) => o !== null);
        if (first >= 0) for (let i = first + 1; i < outcome.length; i++) outcome[i] = NOT_RUN;
      }
      return outcome;
    },
  };
}

/** Throw the first failed line as E_NETLINK naming the command. */
export function throwFirstFailure(
  ip: Ip,
  lines: readonly string[],
  outcome: readonly LineOutcome[],
  ignore?: (msg: string) => boolean,
): void {
  for (let i = 0; i < outcome.length; i++) {
    const o = outcome[i];
    if (o === null || o === undefined || o === NOT_RUN) continue;
    if (ignore?.(o)) continue;
    throw new AgentError('E_NETLINK', `ip ${lines[i]} (${ip.label}): ${o}`);
  }
}
