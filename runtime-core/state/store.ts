import { mkdir, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../host/atomic-file.js';
import type { DaemonRecord } from '../../host/daemon.js';
import { KataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import { validateId } from '../../host/names.js';
import { acquireLock, type FileLock, type LockOptions } from '../../host/file-lock.js';

/**
 * Per-sandbox state on disk: `<stateDir>/sandboxes/<id>/state.json`, the journal of what exists.
 * Each step of sandbox assembly is written (atomically: temp file, fsync, rename) before the next
 * one starts, so `down` after a crash knows exactly what to undo: `resources` are kept in creation
 * order and undone newest first. Locks live apart, in `<stateDir>/locks/<id>.lock`, so removing a
 * sandbox's directory never removes a lock someone holds or waits for.
 */

export const STATE_VERSION = 1;

export type SandboxPhase = 'creating' | 'running' | 'stopping' | 'stopped' | 'failed';

/** One created resource, as its creator described it (e.g. a plugin's Attached). */
export interface ResourceRecord {
  /** Unique within the sandbox (e.g. "net:eth0", "virtiofsd"). */
  id: string;
  kind: string;
  /** JSON-serialisable description, enough to undo it. */
  data: unknown;
  createdAt: string;
}

export interface SandboxState {
  version: typeof STATE_VERSION;
  id: string;
  phase: SandboxPhase;
  createdAt: string;
  updatedAt: string;
  /** The sandbox's network namespace, and whether this runtime created it (then it deletes it). */
  netns?: { path: string; name?: string; created: boolean };
  /** Configuration file used (undefined = built-in defaults). */
  configSource?: string;
  /** Resources in creation order (the journal). */
  resources: ResourceRecord[];
  /** Long-lived processes by role ("qemu", "virtiofsd", "supervisor"), to find them after a crash. */
  processes: Record<string, DaemonRecord>;
  /** Why the sandbox failed, when phase is "failed". */
  error?: { code: string; message: string };
  /** Anything else the assembly keeps (sockets, endpoints, hypervisor details). */
  extra: Record<string, unknown>;
}

export interface ListedSandbox {
  id: string;
  state?: SandboxState;
  /** Set when the state file could not be read (the sandbox still shows, so it can be cleaned). */
  error?: string;
}

const STATE_FILE = 'state.json';

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
  async create(id: string, init: Partial<Pick<SandboxState, 'netns' | 'configSource' | 'extra'>> = {}): Promise<SandboxState> {
    const dir = this.sandboxDir(id);
    await mkdir(this.sandboxesDir, { recursive: true, mode: 0o700 });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (await this.tryLoad(id)) {
      throw new KataError(
        'E_SANDBOX_EXISTS',
        `sandbox ${id} already exists (${this.statePath(id)}); take it down first or choose another id`,
        { sandbox: id },
      );
    }
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
      extra: init.extra ?? {},
    };
    await this.save(state);
    return state;
  }

  /**
   * Write the state atomically: a reader (or a crash) sees the old file or the new one, never a
   * mix. Sets updatedAt.
   */
  async save(state: SandboxState): Promise<void> {
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
      throw new KataError('E_STATE', `cannot write ${final}: ${(e as Error).message}`, { sandbox: state.id }, { cause: e });
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
      throw new KataError('E_STATE', `cannot read ${p}: ${(e as Error).message}`, { sandbox: id }, { cause: e });
    }
    let s: SandboxState;
    try {
      s = JSON.parse(text) as SandboxState;
    } catch (e) {
      throw new KataError(
        'E_STATE',
        `${p} is not valid JSON (${(e as Error).message}); remove the sandbox directory by hand after checking nothing of it runs`,
        { sandbox: id },
        { cause: e },
      );
    }
    if (s === null || typeof s !== 'object' || s.version !== STATE_VERSION || s.id !== id || !Array.isArray(s.resources)) {
      throw new KataError('E_STATE', `${p} is not a version ${STATE_VERSION} state of sandbox ${id}`, { sandbox: id });
    }
    s.processes ??= {};
    s.extra ??= {};
    return s;
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
      throw e;
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

  /** Journal: add a resource (after it was created) and persist. */
  async addResource(state: SandboxState, rec: Omit<ResourceRecord, 'createdAt'>): Promise<void> {
    if (state.resources.some((r) => r.id === rec.id)) {
      throw new KataError('E_INTERNAL', `sandbox ${state.id}: resource ${rec.id} is already recorded`, {
        sandbox: state.id,
        resource: rec.id,
      });
    }
    state.resources.push({ ...rec, createdAt: new Date().toISOString() });
    await this.save(state);
  }

  /** Journal: drop a resource (after it was undone) and persist. Unknown ids are ignored. */
  async removeResource(state: SandboxState, id: string): Promise<void> {
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
  }
}
