import { writeSync } from 'node:fs';

/**
 * Phase marks of one call, for the startup-cost breakdown of bench/cni.ts: with KATA_CNI_TIMING set
 * in the environment, the plugin writes one line `kata-cni-timing {"mark": ms since process start,
 * ..., "exit-event": ms, "exit-event-hr": the same moment in CLOCK_MONOTONIC ms, "cpu-ms": CPU time of
 * the process, "loaded:child_process": 0 or 1, ...}` to stderr when it exits. Unset, mark() is one property read. The launcher and the plugin's
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
    // The same moment on Node's clock and on CLOCK_MONOTONIC (which the bench's own clock is): the
    // bench tells from it when Node's clock started (after exec and the dynamic linking of node)
    // and how long the exit itself took.
    marks['exit-event'] = Math.round(process.uptime() * 1e5) / 100;
    marks['exit-event-hr'] = Number(process.hrtime.bigint() / 1000n) / 1000;
    const cpu = process.cpuUsage();
    marks['cpu-ms'] = Math.round((cpu.user + cpu.system) / 10) / 100;
    // Built-in modules the call loaded that it should not need (see cni/build/bundle.mjs): 0 or 1.
    const loaded = new Set((process as unknown as { moduleLoadList?: string[] }).moduleLoadList ?? []);
    for (const m of ['child_process', 'fs/promises', 'crypto', 'tty']) marks[`loaded:${m}`] = loaded.has(`NativeModule ${m}`) ? 1 : 0;
    try {
      writeSync(2, `kata-cni-timing ${JSON.stringify(marks)}\n`);
    } catch {
      // stderr closed: nothing to report to
    }
  });
}

export function mark(name: string): void {
  const marks = (globalThis as Holder)[KEY];
  if (!marks) return;
  marks[name] = Math.round(process.uptime() * 1e5) / 100;
  const cpu = process.cpuUsage();
  marks[`${name}/cpu`] = Math.round((cpu.user + cpu.system) / 10) / 100;
}
