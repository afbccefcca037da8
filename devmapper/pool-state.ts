/**
 * A thin pool's persisted state: `<state_dir>/devmapper/<pool>.json`, written atomically
 * (host/atomic-file.ts) under the pool's lock file (host/file-lock.ts). It outlives sandboxes and
 * processes: the pool and its thin devices stay after the command that made them exits.
 *
 * Every host effect is journalled as an intent before it happens and replaced by its record after
 * (journal()), so a crash between the two leaves an intent saying what may exist; pool-teardown.ts
 * resolves intents and records alike. Files and loop devices carry their identity (inode), so only
 * what the pool made is ever removed.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../host/atomic-file.js';
import { KataError } from '../host/errors.js';
import { acquireLock, type FileLock } from '../host/file-lock.js';
import type { FileIdentity } from '../host/loop.js';
import { validateDmName } from './dmsetup.js';

export type Role = 'data' | 'metadata';

interface MadeLoop {
  device: string;
  file: FileIdentity;
  role: Role;
}

export type Intent =
  | { op: 'create-file'; path: string; role: Role }
  /** `before`: loop devices already backed by the file (not ours even if the attach is unrecorded). */
  | { op: 'attach-loop'; file: FileIdentity; role: Role; before: string[] }
  | { op: 'create-pool-device' }
  | { op: 'remove-pool-device' }
  | { op: 'create-thin'; id: number }
  | { op: 'create-snap'; id: number; origin: number }
  | { op: 'delete-thin'; id: number }
  | { op: 'activate'; id: number; name: string }
  | { op: 'deactivate'; id: number; name: string };

export interface ThinRecord {
  id: number;
  sizeSectors: number;
  /** The id it is a snapshot of. */
  origin?: number;
  /** dm name while active (/dev/mapper/<name>). */
  active?: string;
  createdAt: string;
}

export interface PoolState {
  version: 1;
  name: string;
  phase: 'creating' | 'ready' | 'removing';
  /** Block devices the pool table uses (given, or the loop devices the pool attached). */
  dataDevice?: string;
  metadataDevice?: string;
  /** Files as given (data/metadata files), whether or not the pool made them. */
  dataFile?: string;
  metadataFile?: string;
  blockSectors: number;
  lowWaterMark: number;
  dataSectors?: number;
  /** Files the pool created (removed with it). */
  files: (FileIdentity & { role: Role })[];
  /** Loop devices the pool attached (detached with it). */
  loops: MadeLoop[];
  /** The pool's dm device was created. */
  poolDevice: boolean;
  intents: Intent[];
  nextId: number;
  thins: ThinRecord[];
  createdAt: string;
}

export function validatePoolName(name: string): string {
  return validateDmName(name, 'pool name');
}

export class PoolStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'devmapper');
  }

  path(pool: string): string {
    return join(this.dir, `${validatePoolName(pool)}.json`);
  }

  async lock(pool: string, purpose: string): Promise<FileLock> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    return acquireLock(join(this.dir, `${validatePoolName(pool)}.lock`), { waitMs: 30_000, purpose });
  }

  async read(pool: string): Promise<PoolState | undefined> {
    let text: string;
    try {
      text = await readFile(this.path(pool), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new KataError('E_STATE', `cannot read ${this.path(pool)}: ${(e as Error).message}`, { path: this.path(pool) });
    }
    try {
      const st = JSON.parse(text) as PoolState;
      if (st.version !== 1 || st.name !== pool) throw new Error(`version ${st.version}, name ${st.name}`);
      return st;
    } catch (e) {
      throw new KataError(
        'E_STATE',
        `${this.path(pool)} is not a pool state file (${(e as Error).message}); remove it if the pool is gone`,
        {
          path: this.path(pool),
        },
      );
    }
  }

  /** The state, or E_INVALID_ARGUMENT naming the pool when there is none. */
  async get(pool: string): Promise<PoolState> {
    const st = await this.read(pool);
    if (!st) throw new KataError('E_INVALID_ARGUMENT', `no thin pool "${pool}" is known here (no ${this.path(pool)})`, { pool });
    return st;
  }

  async write(st: PoolState): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      await writeFileAtomic(this.path(st.name), `${JSON.stringify(st, null, 2)}\n`);
    } catch (e) {
      throw new KataError('E_STATE', `cannot write ${this.path(st.name)}: ${(e as Error).message}`, { path: this.path(st.name) });
    }
  }

  async remove(pool: string): Promise<void> {
    await rm(this.path(pool), { force: true });
  }
}

/**
 * One journalled host effect: the intent is persisted, the effect runs, then the intent is
 * replaced by what `record` writes into the state. Effects are all-or-nothing when they throw
 * (a dmsetup or losetup call the kernel refused, a file creation that removes its own half), so a
 * thrown effect drops its intent; only a crash leaves one behind, for the teardown to resolve.
 */
export async function journal<T>(
  store: PoolStore,
  st: PoolState,
  intent: Intent,
  effect: () => Promise<T>,
  record: (result: T) => void,
  /** Runs between the effect and its record (fault-injection tests crash there). */
  between?: () => void | Promise<void>,
): Promise<T> {
  st.intents.push(intent);
  await store.write(st);
  let r: T;
  try {
    r = await effect();
  } catch (e) {
    st.intents = st.intents.filter((i) => i !== intent);
    await store.write(st);
    throw e;
  }
  await between?.();
  st.intents = st.intents.filter((i) => i !== intent);
  record(r);
  await store.write(st);
  return r;
}

/** Ids the state knows: recorded thin devices and those pending intents name. */
export function usedIds(st: PoolState): Set<number> {
  const ids = new Set(st.thins.map((t) => t.id));
  for (const i of st.intents) if ('id' in i) ids.add(i.id);
  return ids;
}

export const thinDmName = (pool: string, id: number): string => `${pool}-thin-${id}`;
