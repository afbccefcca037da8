import { writeSync } from 'node:fs';

/**
 * Phase marks of one call, for the startup-cost breakdown of bench/cni.ts: with KATA_CNI_TIMING set
 * in the environment, the plugin writes one line `kata-cni-timing {"mark": ms since process start,
 * ...}` to stderr when it exits. Unset, mark() is one property read. The launcher and the plugin's
 * code share the marks through a global (they are two scripts in one file).
 */
const KEY = Symbol.for('kata-cni.timing');
type Holder = { [KEY]?: Record<string, number> };

export function startTiming(env: NodeJS.ProcessEnv): void {
  const h = globalThis as Holder;
  if (!env.KATA_CNI_TIMING || h[KEY]) return;
  const marks: Record<string, number> = {};
  h[KEY] = marks;
  process.on('exit', () => {
    try {
      writeSync(2, `kata-cni-timing ${JSON.stringify(marks)}\n`);
    } catch {
      // stderr closed: nothing to report to
    }
  });
}

export function mark(name: string): void {
  const marks = (globalThis as Holder)[KEY];
  if (marks) marks[name] = Math.round(process.uptime() * 1e5) / 100;
}
