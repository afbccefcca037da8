import { KataError } from '../host/errors.js';

/**
 * Thin device ids: 24-bit numbers the pool's metadata keys devices by (dm-thin's limit). The
 * allocator is persisted in the pool state (`nextId`): ids are handed out in increasing order,
 * skipping those the state knows, and wrap around at the limit.
 */
const MAX_THIN_ID = 2 ** 24 - 1;

export interface IdSpace {
  nextId: number;
  /** Ids in use (thin devices recorded) or reserved (pending intents). */
  used: ReadonlySet<number>;
}

export function checkThinId(id: number, what = 'thin device id'): number {
  if (!Number.isSafeInteger(id) || id < 0 || id > MAX_THIN_ID)
    throw new KataError('E_INVALID_ARGUMENT', `${what} ${id} must be an integer from 0 to ${MAX_THIN_ID}`, { id });
  return id;
}

/** "7" -> 7; anything else is E_INVALID_ARGUMENT naming what it was. */
export function parseThinId(text: string, what = 'thin device id'): number {
  if (!/^\d+$/.test(text)) throw new KataError('E_INVALID_ARGUMENT', `${what} "${text}" must be a number from 0 to ${MAX_THIN_ID}`);
  return checkThinId(Number(text), what);
}

/** The next free id from space.nextId on; advances nothing (the caller stores id + 1 as nextId once it is used). */
export function allocateThinId(space: IdSpace): number {
  let id = space.nextId > MAX_THIN_ID || space.nextId < 1 ? 1 : space.nextId;
  for (let n = 0; n < MAX_THIN_ID; n++) {
    if (!space.used.has(id)) return id;
    id = id >= MAX_THIN_ID ? 1 : id + 1;
  }
  throw new KataError('E_INVALID_ARGUMENT', `no free thin device id: all ${MAX_THIN_ID} are in use`);
}
