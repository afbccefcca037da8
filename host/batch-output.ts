/**
 * Reading the output of `ip -batch` / `tc -batch`: a failed line is reported on stderr as its
 * messages followed by "Command failed -:N". Dependency-free on purpose: the host layer
 * (host/netlink.ts) and the guest agent (guest/agent/ip*.ts, bundled into the guest) both use it.
 */

/** Per batch line: null when it succeeded, else the messages printed for it. */
export type LineOutcome = string | null;

/** The 1-based line number of a "Command failed -:N" line, else undefined. */
export function failedLineNumber(line: string): number | undefined {
  const m = /^Command failed -:(\d+)\s*$/.exec(line);
  return m ? Number(m[1]) : undefined;
}

/**
 * Parse a whole batch's stderr: messages accumulate until "Command failed -:N" assigns them to
 * line N (numbered from firstLine). What follows the last failure is returned as `rest`.
 */
export function parseBatchStderr(stderr: string, lineCount: number, firstLine = 1): { outcome: LineOutcome[]; rest: string } {
  const outcome: LineOutcome[] = new Array<LineOutcome>(lineCount).fill(null);
  let pending: string[] = [];
  for (const l of stderr.split('\n')) {
    const n = failedLineNumber(l);
    if (n !== undefined) {
      const idx = n - firstLine;
      if (idx >= 0 && idx < lineCount) outcome[idx] = pending.join('\n') || 'failed';
      pending = [];
    } else if (l.trim() !== '') {
      pending.push(l.trim());
    }
  }
  return { outcome, rest: pending.join('\n') };
}

/** Splits a text stream into lines: push() chunks, onLine gets each complete line (without "\n"). */
export class TextLines {
  private buf = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: string): void {
    this.buf += chunk;
    let i;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      this.onLine(line);
    }
  }

  /** Whatever came after the last line break. */
  get partial(): string {
    return this.buf;
  }
}
