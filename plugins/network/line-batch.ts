import { KataError, NetlinkError, codeForKernelMessage, isKataError } from '../../host/errors.js';
import type { BatchOutcome, Tool } from '../../host/netlink.js';
import { netnsExists, netnsLabel } from '../../host/netns.js';
import type { PluginContext } from '../../host/plugin.js';
import { sleep } from '../../host/retry.js';
import type { UndoStack } from '../../host/undo.js';
import { linkNotFound } from './link-info.js';

/**
 * One line of an `ip`/`tc` batch together with what undoes it. Lines run with `-force` (every line
 * runs, failures are reported per line), so the undo of every line that succeeded is pushed even
 * when a neighbour failed: rollback then removes exactly the kernel state that really exists.
 */
export interface Step {
  line: string;
  /** Batch lines (same tool) that undo this line, or a function; none when a later undo covers it. */
  undo?: string[] | (() => Promise<void>);
  /** Called when the line succeeded (record what was created in the resources). */
  done?: () => void;
}

type Ctx = Pick<PluginContext, 'netlink' | 'netns' | 'log'>;

/** Kernel answers that mean "already gone" (or "already there" for a restore), tolerated by teardown. */
const GONE =
  /Cannot find|does not exist|Invalid handle|No such (device|file|process)|not found|Parent Qdisc doesn't exist|Cannot delete qdisc with handle of zero|Address already assigned|File exists/i;

function isGoneMessage(msg: string): boolean {
  return GONE.test(msg);
}

const BUSY = /Device or resource busy|EBUSY/i;

/**
 * Run steps as one batch, pushing the undo of every line that succeeded. Lines that failed with EBUSY
 * are run again (with every other failed line, since a filter fails when its qdisc did) up to
 * `busyAttempts` times with 10 ms x attempt backoff (Kata's qdisc policy). Throws the first failure.
 */
export async function runSteps(ctx: Ctx, tool: Tool, steps: readonly Step[], undo: UndoStack, busyAttempts = 1): Promise<void> {
  let pending = steps.map((_, i) => i);
  for (let attempt = 1; ; attempt++) {
    const outcome: BatchOutcome = await ctx.netlink.batch(
      tool,
      ctx.netns,
      pending.map((i) => steps[i]!.line),
    );
    const failed: { i: number; msg: string }[] = [];
    pending.forEach((i, k) => {
      const msg = outcome[k];
      const s = steps[i]!;
      if (msg === null || msg === undefined) {
        s.done?.();
        const u = s.undo;
        if (Array.isArray(u) && u.length > 0) undo.push(`${tool} ${s.line}`, () => bestEffort(ctx, tool, u));
        else if (typeof u === 'function') undo.push(`${tool} ${s.line}`, u);
      } else {
        failed.push({ i, msg });
      }
    });
    if (failed.length === 0) return;
    const busy = failed.some((f) => BUSY.test(f.msg));
    if (!busy || attempt >= busyAttempts) {
      const first = failed.find((f) => BUSY.test(f.msg)) ?? failed[0]!;
      throw lineError(ctx, tool, steps[first.i]!.line, first.msg);
    }
    ctx.log.debug({ tool, lines: failed.map((f) => steps[f.i]!.line), attempt }, 'EBUSY: retrying batch lines');
    await sleep(10 * attempt);
    pending = failed.map((f) => f.i);
  }
}

/** A failed batch line as a typed error; a missing device names the link and the namespace. */
function lineError(ctx: Pick<PluginContext, 'netns'>, tool: Tool, line: string, msg: string): KataError {
  const err = new NetlinkError(tool, netnsLabel(ctx.netns), line, msg, codeForKernelMessage(msg));
  const missing = /Cannot find device "([^"]+)"/.exec(msg);
  if (missing?.[1]) {
    const e = linkNotFound(missing[1], ctx.netns, err);
    return new KataError(e.code, `${e.message} (${tool} ${line})`, e.details, { cause: err });
  }
  return err;
}

/**
 * Run teardown lines: every line runs; "already gone" answers and a vanished namespace are fine.
 * Returns the real failures (message per line) so the caller can report them after finishing.
 */
export async function teardownLines(ctx: Ctx, tool: Tool, lines: readonly string[]): Promise<string[]> {
  if (lines.length === 0) return [];
  let outcome: BatchOutcome | undefined;
  for (let attempt = 1; outcome === undefined; attempt++) {
    try {
      outcome = await ctx.netlink.batch(tool, ctx.netns, lines);
    } catch (e) {
      if (!isKataError(e, 'E_NETNS_NOT_FOUND')) throw e;
      // Gone: everything in it went with it. But a helper process that exited (e.g. an idle
      // coprocess stopping just as the request came) reports the same while the namespace is still
      // there: then try again once with a fresh helper.
      if (!ctx.netns || !netnsExists(ctx.netns)) return [];
      if (attempt >= 2) throw e;
    }
  }
  const problems: string[] = [];
  outcome.forEach((msg, i) => {
    if (msg !== null && !isGoneMessage(msg)) problems.push(`${tool} ${lines[i]}: ${msg.trim()}`);
  });
  return problems;
}

/** Teardown lines whose failures are only logged (rollback of a failed attach). */
async function bestEffort(ctx: Ctx, tool: Tool, lines: readonly string[]): Promise<void> {
  const problems = await teardownLines(ctx, tool, lines);
  if (problems.length > 0) ctx.log.warn({ problems }, 'rollback left something behind');
}

/**
 * Undo of "create a device under a scratch name" when a later line renames it to `final`: delete the
 * scratch device; if it no longer exists it was renamed (nothing else knows its random name), even
 * when the renaming line failed part-way (e.g. renamed, then "up" refused), so delete `final`.
 * A `final` that existed before keeps its name because the rename then failed and the scratch is still there.
 */
export function scratchUndo(ctx: Ctx, tmp: string, final: string): () => Promise<void> {
  return async () => {
    let out: BatchOutcome;
    try {
      out = await ctx.netlink.batch('ip', ctx.netns, [`link del dev ${tmp}`]);
    } catch (e) {
      if (isKataError(e, 'E_NETNS_NOT_FOUND') && (!ctx.netns || !netnsExists(ctx.netns))) return;
      throw e;
    }
    if (out[0] && /Cannot find device/i.test(out[0])) await bestEffort(ctx, 'ip', [`link del dev ${final}`]);
    else if (out[0] && !isGoneMessage(out[0])) ctx.log.warn({ tmp, msg: out[0] }, 'rollback could not delete a scratch device');
  };
}
