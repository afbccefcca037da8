/**
 * Thin devices in a pool: `create_thin N`, `create_snap N ORIGIN` (an active origin is suspended
 * for the message and always resumed, also when the message fails), activation as
 * `/dev/mapper/<pool>-thin-<id>` with the table `0 <sectors> thin /dev/mapper/<pool> <id>`,
 * deactivation, `delete N`. Every operation takes the pool's lock, settles what a crashed earlier
 * one left (recoverThinIntents) and journals its own effect.
 */
import { KataError, isKataError } from '../host/errors.js';
import { allocateThinId, checkThinId } from './device-ids.js';
import { dmCreate, dmInfo, dmMessage, dmRemove, dmResume, dmSuspend } from './dmsetup.js';
import { requireThinProvisioning } from './kernel-support.js';
import { PoolStore, journal, thinDmName, usedIds, validatePoolName, type PoolState, type ThinRecord } from './pool-state.js';
import { recoverThinIntents } from './pool-teardown.js';
import { SECTOR } from './sizes.js';

export interface ThinOptions {
  stateDir: string;
  pool: string;
}

export interface ThinInfo {
  pool: string;
  id: number;
  sizeBytes: number;
  origin?: number;
  /** /dev/mapper/<pool>-thin-<id> while active. */
  device?: string;
}

/** How often an allocated id is retried when the pool already has it (a pool shared with containerd). */
const AUTO_ID_TRIES = 16;

const view = (pool: string, t: ThinRecord): ThinInfo => ({
  pool,
  id: t.id,
  sizeBytes: t.sizeSectors * SECTOR,
  ...(t.origin !== undefined ? { origin: t.origin } : {}),
  ...(t.active ? { device: `/dev/mapper/${t.active}` } : {}),
});

/** Lock the pool, read it (must be ready), settle old intents, run fn, release. */
async function withPool<T>(o: ThinOptions, purpose: string, fn: (store: PoolStore, st: PoolState) => Promise<T>): Promise<T> {
  const pool = validatePoolName(o.pool);
  await requireThinProvisioning();
  const store = new PoolStore(o.stateDir);
  const lock = await store.lock(pool, purpose);
  try {
    const st = await store.get(pool);
    if (st.phase !== 'ready')
      throw new KataError('E_STATE', `thin pool "${pool}" is ${st.phase} (a crash part-way?); remove it with pool remove ${pool}`, {
        pool,
      });
    await recoverThinIntents(store, st);
    return await fn(store, st);
  } finally {
    await lock.release();
  }
}

function thin(st: PoolState, id: number): ThinRecord {
  const t = st.thins.find((x) => x.id === id);
  if (!t) throw new KataError('E_INVALID_ARGUMENT', `thin pool "${st.name}" has no thin device ${id} (made here)`, { pool: st.name, id });
  return t;
}

const exists = (e: unknown): boolean => isKataError(e, 'E_DEVMAPPER') && /File exists/i.test(String(e.details.stderr ?? e.message));

/**
 * Make a new id in the pool with `make(id)` (a create_thin or create_snap message), journalled.
 * An explicit id must be new; an allocated one moves on when the pool already has it.
 */
async function newDevice(
  store: PoolStore,
  st: PoolState,
  wanted: number | undefined,
  intentFor: (id: number) => PoolState['intents'][number],
  make: (id: number) => Promise<void>,
  rec: (id: number) => ThinRecord,
): Promise<ThinRecord> {
  if (wanted !== undefined && usedIds(st).has(checkThinId(wanted)))
    throw new KataError('E_INVALID_ARGUMENT', `thin pool "${st.name}" already has a thin device ${wanted}`, { pool: st.name, id: wanted });
  for (let attempt = 0; ; attempt++) {
    const id = wanted ?? allocateThinId({ nextId: st.nextId, used: usedIds(st) });
    const r = rec(id);
    try {
      await journal(
        store,
        st,
        intentFor(id),
        () => make(id),
        () => {
          st.thins.push(r);
          if (wanted === undefined) st.nextId = id + 1;
        },
      );
      return r;
    } catch (e) {
      if (wanted !== undefined || !exists(e) || attempt + 1 >= AUTO_ID_TRIES) {
        if (exists(e))
          throw new KataError('E_INVALID_ARGUMENT', `thin pool "${st.name}" already has a thin device ${id} (made elsewhere)`, {
            pool: st.name,
            id,
          });
        throw e;
      }
      st.nextId = id + 1;
    }
  }
}

export async function createThin(o: ThinOptions & { id?: number; sizeBytes: number }): Promise<ThinInfo> {
  if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes <= 0 || o.sizeBytes % SECTOR !== 0)
    throw new KataError('E_INVALID_ARGUMENT', `thin device size ${o.sizeBytes} must be a positive multiple of 512 bytes`);
  return withPool(o, 'devmapper thin create', async (store, st) => {
    const t = await newDevice(
      store,
      st,
      o.id,
      (id) => ({ op: 'create-thin', id }),
      (id) => dmMessage(st.name, 0, ['create_thin', id]),
      (id) => ({ id, sizeSectors: o.sizeBytes / SECTOR, createdAt: new Date().toISOString() }),
    );
    return view(st.name, t);
  });
}

export async function createSnapshot(o: ThinOptions & { originId: number; id?: number }): Promise<ThinInfo> {
  return withPool(o, 'devmapper thin snapshot', async (store, st) => {
    const origin = thin(st, checkThinId(o.originId, 'origin id'));
    const t = await newDevice(
      store,
      st,
      o.id,
      (id) => ({ op: 'create-snap', id, origin: origin.id }),
      async (id) => {
        // An active origin must be suspended while its mappings are shared, and resumed whatever happens.
        const active = origin.active && (await dmInfo(origin.active)) ? origin.active : undefined;
        if (active) await dmSuspend(active);
        try {
          await dmMessage(st.name, 0, ['create_snap', id, origin.id]);
        } finally {
          if (active) await dmResume(active);
        }
      },
      (id) => ({ id, sizeSectors: origin.sizeSectors, origin: origin.id, createdAt: new Date().toISOString() }),
    );
    return view(st.name, t);
  });
}

export async function activateThin(o: ThinOptions & { id: number }): Promise<ThinInfo & { device: string }> {
  return withPool(o, 'devmapper thin activate', async (store, st) => {
    const t = thin(st, checkThinId(o.id));
    const name = thinDmName(st.name, t.id);
    if (t.active && (await dmInfo(t.active))) return { ...view(st.name, t), device: `/dev/mapper/${t.active}` };
    if (await dmInfo(name))
      throw new KataError('E_INVALID_ARGUMENT', `a device-mapper device "${name}" already exists (not recorded as ours)`, { name });
    await journal(
      store,
      st,
      { op: 'activate', id: t.id, name },
      () => dmCreate(name, [{ start: 0, length: t.sizeSectors, target: 'thin', args: [`/dev/mapper/${st.name}`, String(t.id)] }]),
      () => {
        t.active = name;
      },
    );
    return { ...view(st.name, t), device: `/dev/mapper/${name}` };
  });
}

async function deactivate(store: PoolStore, st: PoolState, t: ThinRecord): Promise<void> {
  const name = t.active;
  if (!name) return;
  await journal(
    store,
    st,
    { op: 'deactivate', id: t.id, name },
    async () => {
      if (await dmInfo(name)) await dmRemove(name);
    },
    () => {
      delete t.active;
    },
  );
}

export async function deactivateThin(o: ThinOptions & { id: number }): Promise<ThinInfo> {
  return withPool(o, 'devmapper thin deactivate', async (store, st) => {
    const t = thin(st, checkThinId(o.id));
    await deactivate(store, st, t);
    return view(st.name, t);
  });
}

/** Deactivate (when active), then delete the device from the pool's metadata. */
export async function removeThin(o: ThinOptions & { id: number }): Promise<void> {
  await withPool(o, 'devmapper thin remove', async (store, st) => {
    const t = thin(st, checkThinId(o.id));
    await deactivate(store, st, t);
    await journal(
      store,
      st,
      { op: 'delete-thin', id: t.id },
      () => dmMessage(st.name, 0, ['delete', t.id]),
      () => {
        st.thins = st.thins.filter((x) => x !== t);
      },
    );
  });
}
