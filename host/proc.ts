import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';

/**
 * Reading /proc/PID/stat. The start time (field 22, clock ticks since boot) identifies a process
 * together with its pid: a pid reused by another process has a different start time, so a record
 * of {pid, startTime} never leads to signalling a stranger.
 */
export interface ProcStat {
  pid: number;
  /** Command name as the kernel keeps it (at most 15 bytes; may contain spaces and parentheses). */
  comm: string;
  /** One-letter state: R, S, D, Z (zombie), T, X, ... */
  state: string;
  ppid: number;
  /** Field 22: start time after boot, in clock ticks. */
  startTime: number;
}

/** Parse the text of /proc/PID/stat; undefined when it does not have the expected shape. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  // After ") " come fields 3 (state), 4 (ppid), ..., 22 (starttime) = index 19.
  const rest = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  const state = rest[0];
  const ppid = Number(rest[1]);
  const startTime = Number(rest[19]);
  if (!Number.isInteger(pid) || state === undefined || !Number.isInteger(ppid) || !Number.isFinite(startTime)) return undefined;
  return { pid, comm, state, ppid, startTime };
}

/** The stat of a live (or zombie) process, or undefined when there is no such pid. */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcStat(text);
}

/**
 * True when pid is running and started at startTime (a zombie counts as gone: it has exited and
 * only waits to be reaped).
 */
export function isSameProcessAlive(pid: number, startTime: number): boolean {
  const st = readProcStat(pid);
  return st !== undefined && st.startTime === startTime && st.state !== 'Z' && st.state !== 'X';
}

/** Value of a `Key:` line of /proc/PID/status (e.g. VmRSS -> "3432 kB"), or undefined. */
export function readProcStatusField(pid: number, key: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    if (line.startsWith(`${key}:`)) return line.slice(key.length + 1).trim();
  }
  return undefined;
}

/** Resident set size of a process in KiB (VmRSS), or undefined when it is gone. */
export function rssKiB(pid: number): number | undefined {
  const v = readProcStatusField(pid, 'VmRSS');
  if (v === undefined) return undefined;
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) ? n : undefined;
}

/** Direct children of pid (by scanning /proc; cheap enough for the handful of processes we look at). */
export function childPids(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return text ? text.split(/\s+/).map(Number) : [];
  } catch {
    return [];
  }
}

/** Whether a live process other than this one has `path` open (a scan of /proc/PID/fd; needs root for others' fds). */
export function openByAnotherProcess(path: string): boolean {
  let target: string;
  try {
    target = realpathSync(path); // /proc/PID/fd links name the canonical path
  } catch {
    return false; // no such file: nobody has it open
  }
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${e}/fd`);
    } catch {
      continue; // gone, or not ours to see
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${e}/fd/${fd}`) === target) return true;
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return false;
}
