import type { ChildProcess } from 'node:child_process';

/**
 * Let a long-lived helper process (and its pipes) hold the event loop only while a request is in
 * flight, so an idle helper never keeps its parent alive. Dependency-free: the guest agent uses it too.
 */
export function holdEventLoop(child: ChildProcess, on: boolean): void {
  const m = on ? 'ref' : 'unref';
  child[m]();
  for (const s of [child.stdin, child.stdout, child.stderr])
    (s as unknown as Record<string, (() => void) | undefined> | null)?.[m]?.call(s);
}
