/**
 * Named points in time of one process, as wall-clock epoch milliseconds (performance.timeOrigin +
 * performance.now(), so sub-millisecond and comparable across processes of one host). `sandbox up`
 * marks its way through the CLI and the supervisor and prints them relative to the CLI's start in
 * its --json output: the time outside the recorded phases (module loading, process start, reports)
 * is then visible. Marks cost a property write; nothing is logged.
 */

const points: Record<string, number> = {};

/** Now, in epoch ms. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The epoch ms at which this process started (as Node records it). */
export function processStart(): number {
  return performance.timeOrigin;
}

/** Record (or overwrite) a named point of this process. */
export function mark(name: string): void {
  points[name] = epochNow();
}

/** The points recorded so far (epoch ms). */
export function marks(): Record<string, number> {
  return { ...points };
}

/** Points as milliseconds after `origin`, rounded to 0.1 ms, in time order. */
export function relativeTo(origin: number, xs: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(xs).sort((a, b) => a[1] - b[1])) out[k] = Math.round((v - origin) * 10) / 10;
  return out;
}
