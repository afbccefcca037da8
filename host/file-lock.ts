import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KataError } from './errors.js';
import { fsError } from './fs-errors.js';
import type { Logger } from './log.js';
import { isSameProcessAlive, readProcStat } from './proc.js';
import { sleep } from './retry.js';

/**
 * A lock file per sandbox so that two CLIs (or a CLI and a supervisor) never change the same
 * sandbox at once. Taken with O_CREAT|O_EXCL; the file holds the owner's pid and process start time,
 * so a lock left by a dead process (or one whose pid now belongs to another program) is stale and is
 * broken. Breaking happens under a second, short-lived lock file ("<lock>.break") and re-checks the
 * content first, so two processes that both see the same stale lock cannot remove a fresh one.
 */

export interface LockOwner {
  pid: number;
  /** Field 22 of /proc/PID/stat of the owner. */
  startTime: number;
  acquiredAt: string;
  /** What the owner is doing, for the E_LOCKED message (e.g. "sandbox up"). */
  purpose?: string;
}

export interface LockOptions {
  /** How long to wait for a live owner to release (default 10 s; 0 = fail at once). */
  waitMs?: number;
  purpose?: string;
  /** Called once when the lock is found held by a live owner (e.g. to say what is being waited for). */
  onWait?: (owner: LockOwner | undefined) => void;
  log?: Logger;
}

/** A lock file without parseable content younger than this is being written; older is stale. */
const HALF_WRITTEN_GRACE_MS = 2000;
/** A break file older than this was left by a process that died while breaking. */
const BREAK_STALE_MS = 2000;

function ownStartTime(): number {
  return readProcStat(process.pid)?.startTime ?? -1;
}

export class FileLock {
  private released = false;

  /** @internal use acquireLock */
  constructor(
    readonly path: string,
    readonly owner: LockOwner,
    private readonly content: string,
    private readonly log?: Logger,
  ) {}

  get held(): boolean {
    return !this.released;
  }

  /** Remove the lock file if it is still ours. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    let now: string;
    try {
      now = await readFile(this.path, 'utf8');
    } catch {
      this.log?.warn({ lock: this.path }, 'lock file vanished before release');
      return;
    }
    if (now !== this.content) {
      this.log?.warn({ lock: this.path }, 'lock file is no longer ours (broken as stale?); left alone');
      return;
    }
    await unlink(this.path).catch(() => {});
  }
}

async function readOwner(path: string): Promise<{ text: string; owner: LockOwner | undefined } | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fsError(e, `cannot read the lock ${path}`, 'E_STATE');
  }
  try {
    const o = JSON.parse(text) as LockOwner;
    if (Number.isInteger(o.pid) && typeof o.startTime === 'number') return { text, owner: o };
  } catch {
    // half-written, or not ours
  }
  return { text, owner: undefined };
}

async function ageMs(path: string): Promise<number | undefined> {
  try {
    return Date.now() - (await stat(path)).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Create `path` holding `content`; false if it exists. A file that could not be written is removed. */
async function tryCreate(path: string, content: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw fsError(e, `cannot take the lock ${path}`, 'E_STATE');
  }
  try {
    await fh.writeFile(content);
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw fsError(e, `cannot take the lock ${path}`, 'E_STATE');
  }
  await fh.close();
  return true;
}

/**
 * Remove `path` if it still has `staleText`, holding the break lock while checking. False when
 * another process is breaking it (the caller waits a little and looks again).
 */
async function breakStale(path: string, staleText: string, log?: Logger): Promise<boolean> {
  const brk = `${path}.break`;
  if (!(await tryCreate(brk, String(process.pid)))) {
    const age = await ageMs(brk);
    if (age !== undefined && age > BREAK_STALE_MS) await unlink(brk).catch(() => {});
    return false;
  }
  try {
    const now = await readOwner(path);
    if (now !== undefined && now.text === staleText) {
      await unlink(path).catch(() => {});
      log?.warn({ lock: path, staleOwner: staleText }, 'removed a stale lock left by a process that is gone');
    }
  } finally {
    await unlink(brk).catch(() => {});
  }
  return true;
}

/**
 * Take the lock at `path`, waiting up to waitMs while a live process holds it. Throws E_LOCKED
 * naming the owner when it is still held after that.
 */
export async function acquireLock(path: string, opts: LockOptions = {}): Promise<FileLock> {
  const waitMs = opts.waitMs ?? 10_000;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 }).catch((e: unknown) => {
    throw fsError(e, `cannot make the lock directory ${dirname(path)}`, 'E_STATE');
  });
  const owner: LockOwner = {
    pid: process.pid,
    startTime: ownStartTime(),
    acquiredAt: new Date().toISOString(),
    ...(opts.purpose ? { purpose: opts.purpose } : {}),
  };
  const content = JSON.stringify(owner);
  const deadline = Date.now() + waitMs;
  let announced = false;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    if (await tryCreate(path, content)) return new FileLock(path, owner, content, opts.log);
    const cur = await readOwner(path);
    if (cur === undefined) continue; // released meanwhile: try again at once
    let stale: boolean;
    if (cur.owner === undefined) {
      const age = await ageMs(path);
      stale = age !== undefined && age > HALF_WRITTEN_GRACE_MS;
    } else {
      stale = !isSameProcessAlive(cur.owner.pid, cur.owner.startTime);
    }
    if (stale) {
      if (!(await breakStale(path, cur.text, opts.log))) await sleep(delay);
      continue;
    }
    if (!announced) {
      announced = true;
      opts.onWait?.(cur.owner);
    }
    if (Date.now() >= deadline) {
      const o = cur.owner;
      const who = o ? `pid ${o.pid}${o.purpose ? ` (${o.purpose})` : ''} since ${o.acquiredAt}` : 'a process that is still writing it';
      throw new KataError('E_LOCKED', `${path} is held by ${who}; wait for it to finish, or stop that process`, { lock: path, owner: o });
    }
    await sleep(delay);
  }
}
