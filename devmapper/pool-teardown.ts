/**
 * Undoing a pool from its state: the one path for `pool remove`, for a `pool create` that failed
 * part-way, and for a run that crashed between steps. It resolves pending intents (what may exist)
 * as well as records (what does), checks identities before removing anything (a dm device by its
 * table, a loop device by its backing file's inode, a file by its inode), and persists its progress
 * so that it can itself be interrupted and run again.
 */
import { rm, stat } from 'node:fs/promises';
import { blockDevice } from '../host/block-device.js';
import { detachLoopOf, loopsOf } from '../host/loop.js';
import type { DmTableLine } from './dm-status.js';
import { dmInfo, dmMessage, dmRemove, dmResume, dmTables } from './dmsetup.js';
import type { PoolState, PoolStore } from './pool-state.js';

async function majMinOf(dev: string | undefined): Promise<string | undefined> {
  if (!dev) return undefined;
  const b = await blockDevice(dev);
  return b ? `${b.major}:${b.minor}` : undefined;
}

/** The pool's dm device "MAJ:MIN" when a device of its name exists and its table uses the pool's own data and metadata devices. */
async function ourPoolDevice(st: PoolState, tables: Map<string, DmTableLine[]>): Promise<string | undefined> {
  const t = tables.get(st.name);
  const line = t?.[0];
  if (!line || t.length !== 1 || line.target !== 'thin-pool') return undefined;
  const [meta, data] = [await majMinOf(st.metadataDevice), await majMinOf(st.dataDevice)];
  if (!meta || !data || line.args[0] !== meta || line.args[1] !== data) return undefined;
  const info = await dmInfo(st.name);
  return info ? `${info.major}:${info.minor}` : undefined;
}

/** Names of the active thin devices whose table points at the pool device (ours and, e.g., containerd's `<pool>-snap-N`). */
function thinsOnPool(pool: string, tables: Map<string, DmTableLine[]>): string[] {
  return [...tables].filter(([, lines]) => lines.some((l) => l.target === 'thin' && l.args[0] === pool)).map(([name]) => name);
}

async function removeDm(name: string): Promise<void> {
  const info = await dmInfo(name);
  if (!info) return;
  if (info.suspended) await dmResume(name);
  await dmRemove(name);
}

/**
 * Settle the thin-device intents a crash left (under the pool's lock): half-made devices are
 * deleted again, a snapshot origin left suspended is resumed, half-done deactivations and
 * deletions are finished.
 */
export async function recoverThinIntents(store: PoolStore, st: PoolState): Promise<void> {
  const thinOps = new Set(['create-snap', 'create-thin', 'activate', 'deactivate', 'delete-thin']);
  if (!st.intents.some((i) => thinOps.has(i.op))) return; // the common case: nothing to settle, nothing spawned
  const poolUp = (await dmInfo(st.name)) !== undefined;
  for (const i of [...st.intents]) {
    switch (i.op) {
      case 'create-snap': {
        const origin = st.thins.find((t) => t.id === i.origin)?.active;
        const info = origin ? await dmInfo(origin) : undefined;
        if (origin && info?.suspended) await dmResume(origin);
        if (poolUp) await dmMessage(st.name, 0, ['delete', i.id]).catch(() => {});
        break;
      }
      case 'create-thin':
        if (poolUp) await dmMessage(st.name, 0, ['delete', i.id]).catch(() => {});
        break;
      case 'activate':
        await removeDm(i.name);
        break;
      case 'deactivate':
        await removeDm(i.name);
        for (const t of st.thins) if (t.id === i.id) delete t.active;
        break;
      case 'delete-thin':
        if (poolUp) await dmMessage(st.name, 0, ['delete', i.id]).catch(() => {});
        st.thins = st.thins.filter((t) => t.id !== i.id);
        break;
      default:
        continue; // pool-level intents: only the teardown resolves them
    }
    st.intents = st.intents.filter((x) => x !== i);
    await store.write(st);
  }
}

/**
 * Remove everything of the pool: thin devices on it, the pool device, the loop devices it
 * attached, the files it made, the state file. Progress on `progress`.
 */
export async function teardownPool(store: PoolStore, st: PoolState, progress: (m: string) => void = () => {}): Promise<void> {
  st.phase = 'removing';
  await store.write(st);
  await recoverThinIntents(store, st);

  const tables = await dmTables();
  const poolDev = await ourPoolDevice(st, tables);
  if (poolDev) {
    for (const name of thinsOnPool(poolDev, tables)) {
      progress(`deactivating thin device ${name}`);
      await removeDm(name);
    }
    progress(`removing the pool device ${st.name}`);
    await removeDm(st.name);
  }
  st.thins = [];
  st.poolDevice = false;
  st.intents = st.intents.filter((i) => i.op !== 'create-pool-device' && i.op !== 'remove-pool-device');
  await store.write(st);

  for (const l of [...st.loops]) {
    progress(`detaching ${l.device} (${l.file.path})`);
    await detachLoopOf(l.device, l.file);
    st.loops = st.loops.filter((x) => x !== l);
    await store.write(st);
  }
  for (const i of st.intents.filter((x) => x.op === 'attach-loop')) {
    for (const l of await loopsOf(i.file)) {
      if (i.before.includes(l.device)) continue;
      progress(`detaching ${l.device} (${i.file.path}, attached before a crash)`);
      await detachLoopOf(l.device, i.file);
    }
    st.intents = st.intents.filter((x) => x !== i);
    await store.write(st);
  }

  for (const f of [...st.files]) {
    const s = await stat(f.path).catch(() => undefined);
    if (s && s.ino === f.ino) {
      progress(`removing ${f.path}`);
      await rm(f.path, { force: true });
    }
    st.files = st.files.filter((x) => x !== f);
    await store.write(st);
  }
  for (const i of st.intents.filter((x) => x.op === 'create-file')) {
    // The path did not exist when the intent was written: a file there now is the one we made.
    progress(`removing ${i.path} (made before a crash)`);
    await rm(i.path, { force: true });
    st.intents = st.intents.filter((x) => x !== i);
    await store.write(st);
  }
  await store.remove(st.name);
}
