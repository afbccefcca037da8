import { readFileSync } from 'node:fs';
import { sleep } from '../host/retry.js';

/**
 * Readiness of a vhost-user daemon without touching it: the C virtiofsd serves exactly one client
 * and exits when it leaves, so a probe connection would consume it; and its socket file exists
 * before listen(). /proc/net/unix lists the path with flag __SO_ACCEPTCON (0x10000) once it listens.
 * /proc/net/unix is per network namespace: this sees daemons bound in the caller's namespace.
 */

const SO_ACCEPTCON = 0x10000;

export interface UnixSocketEntry {
  flags: number;
  type: number;
  state: number;
  inode: number;
  path: string;
}

/** Parse /proc/net/unix (header line skipped; entries without a path skipped). */
export function parseProcNetUnix(text: string): UnixSocketEntry[] {
  const out: UnixSocketEntry[] = [];
  const lines = text.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    // Num RefCount Protocol Flags Type St Inode Path
    const m = /^\s*\S+:\s+\S+\s+\S+\s+([0-9A-Fa-f]+)\s+([0-9A-Fa-f]+)\s+([0-9A-Fa-f]+)\s+(\d+)\s(.+)$/.exec(line);
    if (!m) continue;
    out.push({
      flags: Number.parseInt(m[1]!, 16),
      type: Number.parseInt(m[2]!, 16),
      state: Number.parseInt(m[3]!, 16),
      inode: Number(m[4]),
      path: m[5]!,
    });
  }
  return out;
}

function readProcNetUnix(): UnixSocketEntry[] {
  try {
    return parseProcNetUnix(readFileSync('/proc/net/unix', 'utf8'));
  } catch {
    return [];
  }
}

/** Is some socket bound at path and listening (in the caller's network namespace)? */
export function isListening(path: string, entries: UnixSocketEntry[] = readProcNetUnix(), exclude?: ReadonlySet<number>): boolean {
  return entries.some((e) => e.path === path && (e.flags & SO_ACCEPTCON) !== 0 && !exclude?.has(e.inode));
}

/** Inodes of the sockets listening at path now (to tell a new listener from a dying old one). */
export function listeningInodes(path: string, entries: UnixSocketEntry[] = readProcNetUnix()): Set<number> {
  return new Set(entries.filter((e) => e.path === path && (e.flags & SO_ACCEPTCON) !== 0).map((e) => e.inode));
}

export type ReadyOutcome = 'listening' | 'exited' | 'timeout';

/**
 * Poll until path is listening (by a socket not in `exclude`), `gone()` says the daemon has exited,
 * or timeoutMs passes. Polls fast at first (the C daemon listens within a few ms) then every 10 ms.
 */
export async function waitListening(
  path: string,
  opts: { timeoutMs: number; gone: () => boolean; exclude?: ReadonlySet<number> },
): Promise<ReadyOutcome> {
  const deadline = Date.now() + opts.timeoutMs;
  for (let i = 0; ; i++) {
    if (isListening(path, readProcNetUnix(), opts.exclude)) return 'listening';
    if (opts.gone()) return 'exited';
    if (Date.now() >= deadline) return 'timeout';
    if (i < 20) await new Promise<void>((r) => setImmediate(r));
    else await sleep(i < 40 ? 1 : 10);
  }
}
