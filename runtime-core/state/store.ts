import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../host/atomic-file.js';
import type { DaemonRecord } from '../../host/daemon.js';
import type { NetnsIdentity } from '../../host/netns.js';
import { isResourceKind, type JournalRecord } from '../sandbox/resources.js';
import { KataError } from '../../host/errors.js';
import { fsError } from '../../host/fs-errors.js';
import type { Logger } from '../../host/log.js';
import { SOCKET_PATH_MAX, validateId } from '../../host/names.js';
import { acquireLock, type FileLock, type LockOptions } from '../../host/file-lock.js';

/**
 * Per-sandbox state on disk: `<stateDir>/sandboxes/<id>/state.json`, the journal of what exists.
 * Each step of sandbox assembly is written (atomically: temp file, fsync, rename) before the next
 * one starts, so `down` after a crash knows exactly what to undo: `resources` are kept in creation
 * order and undone newest first. Locks live apart, in `<stateDir>/locks/<id>.lock`, so removing a
 * sandbox's directory never removes a lock someone holds or waits for.
 *
 * The sandbox's sockets (QMP, agent, virtiofsd, supervisor) live in its run directory: the sandbox
 * directory itself while socket paths in it fit the 107 bytes of sun_path, else (the 64-hex ids of
 * CRI under a long state_dir) `<stateDir>/run/<first 12 of the id>-<8 hex of sha256(id)>`, which
 * stays recognisable (crictl shows 13-character ids) and is removed with the sandbox.
 */

/** Format version of state.json; a file of another version is refused with how to clean it up. */
export const STATE_VERSION = 2;

export type SandboxPhase = 'creating' | 'running' | 'stopping' | 'stopped' | 'failed';

/** The sandbox's network namespace: the one it was given (never deleted) or the one it created (a journal resource). */
export interface NetnsState extends NetnsIdentity {
  path: string;
  name?: string;
  created: boolean;
}

export interface SandboxState {
  version: typeof STATE_VERSION;
  id: string;
  phase: SandboxPhase;
  createdAt: string;
  updatedAt: string;
  netns?: NetnsState;
  /** Configuration file used (undefined = built-in defaults). */
  configSource?: string;
  /** The journal: resources in creation order, typed by kind (sandbox/resources.ts). */
  resources: JournalRecord[];
  /** Long-lived processes by role ("qemu", "virtiofsd", "supervisor"), to find them after a crash. */
  processes: Record<string, DaemonRecord>;
  /** Why the sandbox failed, when phase is "failed". */
  error?: { code: string; message: string };
  /** Step timings of `up` (ms), for the status view and the benchmarks. */
  timings?: Record<string, number>;
}

const PHASES: readonly SandboxPhase[] = ['creating', 'running', 'stopping', 'stopped', 'failed'];

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isJournalRecord(x: unknown): x is JournalRecord {
  if (!isRecord(x) || typeof x.id !== 'string' || typeof x.at !== 'string') return false;
  if (typeof x.kind !== 'string' || !isResourceKind(x.kind)) return false;
  if (x.phase === 'intent') return 'config' in x;
  return x.phase === 'done' && isRecord(x.data) && isRecord(x.data.resources);
}

/** The checks that make a parsed state.json a SandboxState (its records are of known kinds and phases). */
function isSandboxState(x: Record<string, unknown>, id: string): x is Record<string, unknown> & SandboxState {
  return (
    x.id === id &&
    typeof x.phase === 'string' &&
    (PHASES as readonly string[]).includes(x.phase) &&
    Array.isArray(x.resources) &&
    x.resources.every(isJournalRecord) &&
    isRecord(x.processes)
  );
}

export interface ListedSandbox {
  id: string;
  state?: SandboxState;
  /** Set when the state file could not be read (the sandbox still shows, so it can be cleaned). */
  error?: string;
}

const STATE_FILE = 'state.json';

/** Room left in a socket path for the names kept in a run directory ("/supervisor.sock" is 16 bytes). */
const SOCKET_NAME_ROOM = 24;

/** The short run directory name of a sandbox whose own directory is too long for socket paths. */
function shortRunName(id: string): string {
  return `${id.slice(0, 12)}-${createHash('sha256').update(id).digest('hex').slice(0, 8)}`;
}

/** Mount points under a directory (from /proc/self/mountinfo). */
function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    const p = mp.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(prefix)) out.push(p);
  }
  return out;
}

export class StateStore {
  readonly sandboxesDir: string;
  readonly locksDir: string;
  /** The save in progress per sandbox: saves run one after another (see save). */
  private readonly saving = new Map<string, Promise<void>>();

  constructor(
    readonly stateDir: string,
    private readonly log?: Logger,
  ) {
    this.sandboxesDir = join(stateDir, 'sandboxes');
    this.locksDir = join(stateDir, 'locks');
  }

  /** The sandbox's private directory (state, sockets, console log). */
  sandboxDir(id: string): string {
    return join(this.sandboxesDir, validateId(id));
  }

  /** Where the sandbox's sockets go (see the header): derived from the id alone, so a crashed run finds it. */
  runDir(id: string): string {
    const own = this.sandboxDir(id);
    if (Buffer.byteLength(own) + SOCKET_NAME_ROOM <= SOCKET_PATH_MAX) return own;
    return join(this.stateDir, 'run', shortRunName(id));
  }

  /** The supervisor's log (its stderr), kept outside the sandbox directory so a failed start keeps it until `down`. */
  logPath(id: string): string {
    return join(this.stateDir, 'logs', `${validateId(id)}.log`);
  }

  statePath(id: string): string {
    return join(this.sandboxDir(id), STATE_FILE);
  }

  lockPath(id: string): string {
    return join(this.locksDir, `${validateId(id)}.lock`);
  }

  /** Lock one sandbox (see lock.ts); release it when done. */
  lock(id: string, opts: LockOptions = {}): Promise<FileLock> {
    return acquireLock(this.lockPath(id), { ...(this.log ? { log: this.log } : {}), ...opts });
  }

  /** Run fn holding the sandbox's lock. */
  async withLock<T>(id: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
    const l = await this.lock(id, opts);
    try {
      return await fn();
    } finally {
      await l.release();
    }
  }

  /** Make the directory and the first state file; E_SANDBOX_EXISTS if the sandbox has state already. */
  async create(id: string, init: Partial<Pick<SandboxState, 'netns' | 'configSource'>> = {}): Promise<SandboxState> {
    const dir = this.sandboxDir(id);
    await mkdir(this.sandboxesDir, { recursive: true, mode: 0o700 }).catch((e: unknown) => {
      throw fsError(e, `cannot make ${this.sandboxesDir}`, 'E_STATE');
    });
    // Exclusive: of two creators of one id, exactly one gets the directory.
    const exists = (): KataError =>
      new KataError('E_SANDBOX_EXISTS', `sandbox ${id} already exists (${this.statePath(id)}); take it down first or choose another id`, {
        sandbox: id,
      });
    let made = false;
    try {
      await mkdir(dir, { mode: 0o700 });
      made = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(e, `cannot make ${dir}`, 'E_STATE');
      // A directory without state is what a crashed start leaves before its first write: take it
      // only when it is empty (anything in it belongs to a live or crashed start: not ours).
      if ((await readdir(dir)).length > 0) throw exists();
    }
    await this.makeRunDir(id).catch(async (e: unknown) => {
      await rm(dir, { recursive: true, force: true });
      throw e;
    });
    const now = new Date().toISOString();
    const state: SandboxState = {
      version: STATE_VERSION,
      id,
      phase: 'creating',
      createdAt: now,
      updatedAt: now,
      ...(init.netns ? { netns: init.netns } : {}),
      ...(init.configSource ? { configSource: init.configSource } : {}),
      resources: [],
      processes: {},
    };
    try {
      await this.save(state);
    } catch (e) {
      // No state was written (a full file system): the directory goes too, so nothing is left.
      if (made) await rm(dir, { recursive: true, force: true }).catch(() => {});
      throw e;
    }
    return state;
  }

  /** A separate run directory (long ids): made here, refused when even it leaves no room for socket names. */
  private async makeRunDir(id: string): Promise<void> {
    const run = this.runDir(id);
    if (run === this.sandboxDir(id)) return;
    if (Buffer.byteLength(run) + SOCKET_NAME_ROOM > SOCKET_PATH_MAX) {
      throw new KataError(
        'E_SOCKET_PATH_TOO_LONG',
        `state_dir ${this.stateDir} is too long for the unix sockets of sandbox ${id} (${run}/supervisor.sock and others must fit in ${SOCKET_PATH_MAX} bytes): choose a state_dir of at most ${SOCKET_PATH_MAX - SOCKET_NAME_ROOM - 26} bytes`,
        { sandbox: id, stateDir: this.stateDir },
      );
    }
    await mkdir(join(this.stateDir, 'run'), { recursive: true, mode: 0o700 });
    await rm(run, { recursive: true, force: true }); // a crashed run's leftovers (sockets only)
    await mkdir(run, { mode: 0o700 });
  }

  /**
   * Write the state atomically: a reader (or a crash) sees the old file or the new one, never a
   * mix. Sets updatedAt. Saves of one sandbox run one after another, each writing the state as it
   * is when its turn comes: steps that run side by side (network, virtiofsd) journal concurrently,
   * and two overlapping writes could otherwise rename an older snapshot over a newer one, losing a
   * record a crash then needs.
   */
  async save(state: SandboxState): Promise<void> {
    const prev = this.saving.get(state.id) ?? Promise.resolve();
    const turn = prev.catch(() => {}).then(() => this.writeState(state));
    this.saving.set(state.id, turn);
    try {
      await turn;
    } finally {
      if (this.saving.get(state.id) === turn) this.saving.delete(state.id);
    }
  }

  private async writeState(state: SandboxState): Promise<void> {
    state.updatedAt = new Date().toISOString();
    const final = this.statePath(state.id);
    try {
      await writeFileAtomic(final, `${JSON.stringify(state, null, 1)}\n`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new KataError(
          'E_STATE',
          `cannot write state of sandbox ${state.id}: ${this.sandboxDir(state.id)} does not exist (removed?)`,
          { sandbox: state.id },
          { cause: e },
        );
      }
      throw fsError(e, `cannot write ${final}`, 'E_STATE');
    }
  }

  /** The state of a sandbox; E_SANDBOX_NOT_FOUND when there is none, E_STATE when unreadable. */
  async load(id: string): Promise<SandboxState> {
    const p = this.statePath(id);
    let text: string;
    try {
      text = await readFile(p, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new KataError('E_SANDBOX_NOT_FOUND', `no sandbox ${id} (no ${p}); see \`kata-resources sandbox list\``, { sandbox: id });
      }
      throw fsError(e, `cannot read ${p}`, 'E_STATE');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new KataError(
        'E_STATE',
        `${p} is not valid JSON (${(e as Error).message}); remove the sandbox directory by hand after checking nothing of it runs`,
        { sandbox: id },
        { cause: e },
      );
    }
    if (!isRecord(parsed)) throw new KataError('E_STATE', `${p} does not hold a sandbox state object`, { sandbox: id });
    if (parsed.version !== STATE_VERSION) {
      throw new KataError(
        'E_STATE',
        `${p} has state format version ${JSON.stringify(parsed.version)}; this kata-resources reads version ${STATE_VERSION}. Take sandbox ${id} down with the kata-resources that created it, or stop its processes (pids in the file) and remove ${this.sandboxDir(id)} by hand`,
        { sandbox: id, version: parsed.version },
      );
    }
    if (!isSandboxState(parsed, id)) {
      throw new KataError(
        'E_STATE',
        `${p} is not a valid version ${STATE_VERSION} state of sandbox ${id} (a record of an unknown kind or shape)`,
        {
          sandbox: id,
        },
      );
    }
    return parsed;
  }

  async tryLoad(id: string): Promise<SandboxState | undefined> {
    try {
      return await this.load(id);
    } catch (e) {
      if (e instanceof KataError && e.code === 'E_SANDBOX_NOT_FOUND') return undefined;
      throw e;
    }
  }

  /** Every sandbox with a directory, sorted by id; unreadable ones carry `error`. */
  async list(): Promise<ListedSandbox[]> {
    let names: string[];
    try {
      names = await readdir(this.sandboxesDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fsError(e, `cannot list ${this.sandboxesDir}`, 'E_STATE');
    }
    const out: ListedSandbox[] = [];
    for (const id of names.sort()) {
      try {
        validateId(id);
      } catch {
        continue;
      }
      try {
        const state = await this.tryLoad(id);
        if (state) out.push({ id, state });
      } catch (e) {
        out.push({ id, error: (e as Error).message });
      }
    }
    return out;
  }

  /** Journal: add or replace a record (an intent becomes done under the same id) and persist. */
  async putRecord(state: SandboxState, rec: JournalRecord, replaceDone = false): Promise<void> {
    const i = state.resources.findIndex((r) => r.id === rec.id);
    if (i >= 0) {
      if (state.resources[i]!.phase === 'done' && !replaceDone) {
        throw new KataError('E_INTERNAL', `sandbox ${state.id}: resource ${rec.id} is already recorded`, {
          sandbox: state.id,
          resource: rec.id,
        });
      }
      state.resources[i] = rec;
    } else state.resources.push(rec);
    await this.save(state);
  }

  /** Journal: drop a record (after its resource was undone) and persist. Unknown ids are ignored. */
  async removeRecord(state: SandboxState, id: string): Promise<void> {
    const before = state.resources.length;
    state.resources = state.resources.filter((r) => r.id !== id);
    if (state.resources.length !== before) await this.save(state);
  }

  /** Load, change, save (callers hold the sandbox lock). */
  async update(id: string, fn: (s: SandboxState) => void | Promise<void>): Promise<SandboxState> {
    const s = await this.load(id);
    await fn(s);
    await this.save(s);
    return s;
  }

  /**
   * Remove the sandbox's directory (state, sockets, logs). Refuses (E_STATE) when something is still
   * mounted below it. Missing is fine.
   */
  async remove(id: string): Promise<void> {
    const dir = this.sandboxDir(id);
    const mounted = mountsUnder(dir);
    if (mounted.length > 0) {
      throw new KataError('E_STATE', `sandbox ${id}: ${mounted.join(', ')} still mounted under ${dir}; unmount first`, {
        sandbox: id,
        mounts: mounted,
      });
    }
    // State first, so a crash half-way leaves no state pointing at removed files.
    await unlink(join(dir, STATE_FILE)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    await rm(dir, { recursive: true, force: true });
    const run = this.runDir(id);
    if (run !== dir) await rm(run, { recursive: true, force: true });
  }
}
