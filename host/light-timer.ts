/**
 * A one-shot timer that never holds the event loop, made with `Atomics.waitAsync` on a cell of its
 * own (its timeout is a delayed task of V8's platform, which Node runs on its loop without holding
 * it; cancel wakes the waiter instead). Why not setTimeout: the first setTimeout of a process
 * compiles Node's timer code (Timeout, the timer lists, the priority queue, async-hook ids), about
 * 0.4 ms, and a kata-cni call is a new process whose helpers' watchdog and idle timer are the only
 * timers it arms; this costs about 30 µs. Where Atomics.waitAsync is missing, an unref'd setTimeout.
 * The callback may run only while something else keeps the process alive (a pending request's pipes,
 * for the helpers): as an unref'd timer's would.
 */
type WaitAsync = (cell: Int32Array, index: number, value: number, timeoutMs: number) => { async: boolean; value: unknown };

export interface LightTimer {
  cancel(): void;
}

export function lightTimer(ms: number, fn: () => void): LightTimer {
  const waitAsync = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync;
  if (typeof waitAsync !== 'function') {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  }
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const w = waitAsync(cell, 0, 0, ms);
  let cancelled = false;
  const fire = (outcome: unknown): void => {
    if (!cancelled && outcome === 'timed-out') fn();
  };
  if (w.async) void (w.value as Promise<string>).then(fire);
  else queueMicrotask(() => fire(w.value));
  return {
    cancel: () => {
      if (cancelled) return;
      cancelled = true;
      Atomics.notify(cell, 0, 1);
    },
  };
}
