import type { Logger } from './log.js';

/**
 * A stack of undo actions: each finished step pushes its inverse; on failure, unwind() runs them
 * newest first, logging (not throwing) the failures of individual undos so every one gets a chance.
 */
export class UndoStack {
  private readonly steps: { what: string; undo: () => Promise<void> }[] = [];

  constructor(private readonly log?: Logger) {}

  push(what: string, undo: () => Promise<void>): void {
    this.steps.push({ what, undo });
  }

  get size(): number {
    return this.steps.length;
  }

  async unwind(): Promise<void> {
    while (this.steps.length > 0) {
      const s = this.steps.pop()!;
      try {
        await s.undo();
      } catch (e) {
        this.log?.warn({ err: e, step: s.what }, 'undo step failed');
      }
    }
  }

  /** Run body; on any error undo what was pushed, then rethrow. */
  async guard<T>(body: (u: UndoStack) => Promise<T>): Promise<T> {
    try {
      return await body(this);
    } catch (e) {
      await this.unwind();
      throw e;
    }
  }
}
