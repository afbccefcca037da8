/**
 * A device-mapper thin pool as containerd's devmapper snapshotter expects one to exist (the setup
 * Kata's docs have Firecracker users do by hand): from two block devices, or from two sparse files
 * on loop devices; the first 4 KiB of the metadata device zeroed (fresh metadata); the table
 * `0 <data sectors> thin-pool <metadata> <data> <block sectors> <low water mark> 1 skip_block_zeroing`
 * (containerd's own CreatePool). Each step is journalled (pool-state.ts); any failure undoes the
 * finished ones (pool-teardown.ts), and `pool remove` undoes a pool also after a crash part-way.
 */
import { open, realpath, rm, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { requireBlockDevice } from '../host/block-device.js';
import { KataError } from '../host/errors.js';
import { attachLoop, fileIdentity, loopsOf } from '../host/loop.js';
import { parseThinPoolStatus, type ThinPoolStatus } from './dm-status.js';
import { dmCreate, dmInfo, dmStatus } from './dmsetup.js';
import { requireThinProvisioning } from './kernel-support.js';
import { PoolStore, journal, validatePoolName, type PoolState, type Role } from './pool-state.js';
import { teardownPool } from './pool-teardown.js';
import { SECTOR } from './sizes.js';

const DEFAULT_BLOCK_SIZE = 64 * 1024;
const MIN_BLOCK = 64 * 1024;
const MAX_BLOCK = 1024 ** 3;
/** containerd's and Kata's documented value (in pool blocks), capped for small pools. */
const DEFAULT_LOW_WATER_MARK = 32768;
const MAX_METADATA = 16 * 1024 ** 3;
const MIN_METADATA = 16 * 1024 ** 2;

type PoolSource =
  | { kind: 'devices'; data: string; metadata: string }
  | { kind: 'files'; dataFile: string; metadataFile: string; sizeBytes: number; metadataSizeBytes?: number };

export interface PoolOptions {
  stateDir: string;
  progress?: (m: string) => void;
}

export interface CreatePoolOptions extends PoolOptions {
  name: string;
  source: PoolSource;
  /** Default 64 KiB; a multiple of 64 KiB up to 1 GiB. */
  blockSizeBytes?: number;
  /** In pool blocks; default min(32768, a tenth of the pool). */
  lowWaterMark?: number;
  /** Called after each step by name (fault-injection tests throw or crash there). */
  checkpoint?: (step: string) => void | Promise<void>;
}

export interface PoolInfo {
  name: string;
  /** /dev/mapper/<name> */
  device: string;
  dataDevice: string;
  metadataDevice: string;
  blockSizeBytes: number;
  dataBytes: number;
  lowWaterMark: number;
  /** Files and loop devices the pool made (and `pool remove` takes away). */
  madeFiles: string[];
  madeLoops: string[];
}

export interface PoolStatus extends PoolInfo {
  phase: PoolState['phase'];
  /** undefined when the pool's dm device is not there. */
  status?: ThinPoolStatus & { usedDataBytes: number; totalDataBytes: number; usedMetadataBytes: number; totalMetadataBytes: number };
  thins: { id: number; sizeBytes: number; origin?: number; device?: string }[];
  pendingIntents: PoolState['intents'];
}

/**
 * Metadata for the data size: the kernel's rule of thumb is 48 bytes per data block; four times
 * that leaves room for snapshots sharing blocks (a sparse file costs nothing until used).
 */
export function defaultMetadataSize(dataBytes: number, blockBytes: number): number {
  const want = Math.ceil((4 * 48 * dataBytes) / blockBytes / 2 ** 20) * 2 ** 20;
  return Math.min(MAX_METADATA, Math.max(MIN_METADATA, want));
}

function checkBlockSize(b: number): number {
  if (b % MIN_BLOCK !== 0 || b < MIN_BLOCK || b > MAX_BLOCK)
    throw new KataError('E_INVALID_ARGUMENT', `block size ${b} bytes must be a multiple of 64 KiB from 64 KiB to 1 GiB`, { blockSize: b });
  return b;
}

function info(st: PoolState): PoolInfo {
  return {
    name: st.name,
    device: `/dev/mapper/${st.name}`,
    dataDevice: st.dataDevice ?? '',
    metadataDevice: st.metadataDevice ?? '',
    blockSizeBytes: st.blockSectors * SECTOR,
    dataBytes: (st.dataSectors ?? 0) * SECTOR,
    lowWaterMark: st.lowWaterMark,
    madeFiles: st.files.map((f) => f.path),
    madeLoops: st.loops.map((l) => l.device),
  };
}

/** Create (sparse) or take the file, then attach it to a loop device; journalled. */
async function fileOnLoop(
  store: PoolStore,
  st: PoolState,
  role: Role,
  path: string,
  size: number,
  checkpoint: CreatePoolOptions['checkpoint'],
) {
  const existing = await stat(path).catch(() => undefined);
  if (existing && !existing.isFile())
    throw new KataError('E_INVALID_ARGUMENT', `--${role}-file ${path} exists and is not a regular file`, { path });
  if (!existing) {
    await journal(
      store,
      st,
      { op: 'create-file', path, role },
      async () => {
        const fh = await open(path, 'wx', 0o600);
        try {
          await fh.truncate(size);
          await fh.close();
        } catch (e) {
          await fh.close().catch(() => {});
          await rm(path, { force: true });
          throw e;
        }
        return fileIdentity(path);
      },
      (id) => st.files.push({ ...id, role }),
      () => checkpoint?.(`${role}-file-unrecorded`),
    );
  }
  await checkpoint?.(`${role}-file`);
  const file = await fileIdentity(path);
  const before = (await loopsOf(file)).map((l) => l.device);
  const device = await journal(
    store,
    st,
    { op: 'attach-loop', file, role, before },
    () => attachLoop(path),
    (device) => {
      st.loops.push({ device, file, role });
      if (role === 'data') st.dataDevice = device;
      else st.metadataDevice = device;
    },
    () => checkpoint?.(`${role}-loop-unrecorded`),
  );
  await checkpoint?.(`${role}-loop`);
  return device;
}

/** Zero the first 4 KiB of the metadata device, as containerd's docs do, so the kernel formats fresh metadata. */
async function zeroMetadataHeader(device: string): Promise<void> {
  const fh = await open(device, 'r+');
  try {
    await fh.write(Buffer.alloc(4096), 0, 4096, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function createPool(o: CreatePoolOptions): Promise<PoolInfo> {
  const name = validatePoolName(o.name);
  const progress = o.progress ?? (() => {});
  const blockBytes = checkBlockSize(o.blockSizeBytes ?? DEFAULT_BLOCK_SIZE);
  const src = o.source;
  if (src.kind === 'files') {
    if (src.sizeBytes < blockBytes * 16)
      throw new KataError('E_INVALID_ARGUMENT', `--size ${src.sizeBytes} bytes is too small for a pool (at least 16 blocks)`);
    if (resolve(src.dataFile) === resolve(src.metadataFile))
      throw new KataError('E_INVALID_ARGUMENT', 'the data and metadata files must differ');
  }
  if (o.lowWaterMark !== undefined && (!Number.isSafeInteger(o.lowWaterMark) || o.lowWaterMark < 1))
    throw new KataError('E_INVALID_ARGUMENT', `low water mark ${o.lowWaterMark} must be a positive number of blocks`);
  await requireThinProvisioning();

  const store = new PoolStore(o.stateDir);
  const lock = await store.lock(name, 'devmapper pool create');
  try {
    if (await store.read(name))
      throw new KataError('E_INVALID_ARGUMENT', `thin pool "${name}" exists (${store.path(name)}); remove it first: pool remove ${name}`);
    if (await dmInfo(name))
      throw new KataError('E_INVALID_ARGUMENT', `a device-mapper device "${name}" already exists; choose another pool name`, { name });
    const st: PoolState = {
      version: 1,
      name,
      phase: 'creating',
      blockSectors: blockBytes / SECTOR,
      lowWaterMark: 0,
      files: [],
      loops: [],
      poolDevice: false,
      intents: [],
      nextId: 1,
      thins: [],
      createdAt: new Date().toISOString(),
    };
    await store.write(st);
    try {
      await o.checkpoint?.('state');
      let data: string;
      let meta: string;
      if (src.kind === 'files') {
        st.dataFile = resolve(src.dataFile);
        st.metadataFile = resolve(src.metadataFile);
        progress(`data file ${st.dataFile} and metadata file ${st.metadataFile} on loop devices`);
        data = await fileOnLoop(store, st, 'data', st.dataFile, src.sizeBytes, o.checkpoint);
        meta = await fileOnLoop(
          store,
          st,
          'metadata',
          st.metadataFile,
          src.metadataSizeBytes ?? defaultMetadataSize(src.sizeBytes, blockBytes),
          o.checkpoint,
        );
      } else {
        const [d, m] = [await requireBlockDevice(src.data, '--data'), await requireBlockDevice(src.metadata, '--metadata')];
        if (d.major === m.major && d.minor === m.minor)
          throw new KataError('E_INVALID_ARGUMENT', `--data and --metadata are the same device (${d.path})`);
        [data, meta] = [await realpath(src.data), await realpath(src.metadata)];
        st.dataDevice = data;
        st.metadataDevice = meta;
        await store.write(st);
      }
      const dataDev = await requireBlockDevice(data, 'the data device');
      const blocks = Math.floor(dataDev.sizeBytes / blockBytes);
      if (blocks < 16)
        throw new KataError('E_INVALID_ARGUMENT', `the data device ${data} holds only ${blocks} blocks of ${blockBytes} bytes`);
      st.dataSectors = (blocks * blockBytes) / SECTOR;
      st.lowWaterMark = o.lowWaterMark ?? Math.min(DEFAULT_LOW_WATER_MARK, Math.max(1, Math.floor(blocks / 10)));
      progress(`zeroing the metadata header of ${meta}`);
      await zeroMetadataHeader(meta);
      await o.checkpoint?.('metadata-zeroed');
      progress(`creating the pool device /dev/mapper/${name}`);
      const table = [meta, data, String(st.blockSectors), String(st.lowWaterMark), '1', 'skip_block_zeroing'];
      await journal(
        store,
        st,
        { op: 'create-pool-device' },
        () => dmCreate(name, [{ start: 0, length: st.dataSectors!, target: 'thin-pool', args: table }]),
        () => {
          st.poolDevice = true;
        },
        () => o.checkpoint?.('pool-device-unrecorded'),
      );
      await o.checkpoint?.('pool-device');
      st.phase = 'ready';
      await store.write(st);
      return info(st);
    } catch (e) {
      progress(`pool create failed (${(e as Error).message}); undoing what was done`);
      await teardownPool(store, st, progress).catch((u) => progress(`undo incomplete: ${(u as Error).message}; run pool remove ${name}`));
      throw e;
    }
  } finally {
    await lock.release();
  }
}

export async function poolStatus(o: PoolOptions & { name: string }): Promise<PoolStatus> {
  await requireThinProvisioning();
  const st = await new PoolStore(o.stateDir).get(validatePoolName(o.name));
  const out: PoolStatus = {
    ...info(st),
    phase: st.phase,
    thins: st.thins.map((t) => ({
      id: t.id,
      sizeBytes: t.sizeSectors * SECTOR,
      ...(t.origin !== undefined ? { origin: t.origin } : {}),
      ...(t.active ? { device: `/dev/mapper/${t.active}` } : {}),
    })),
    pendingIntents: st.intents,
  };
  if (await dmInfo(st.name)) {
    const s = parseThinPoolStatus(await dmStatus(st.name));
    const block = st.blockSectors * SECTOR;
    // Metadata blocks are 4 KiB.
    out.status = {
      ...s,
      usedDataBytes: s.usedDataBlocks * block,
      totalDataBytes: s.totalDataBlocks * block,
      usedMetadataBytes: s.usedMetadataBlocks * 4096,
      totalMetadataBytes: s.totalMetadataBlocks * 4096,
    };
  }
  return out;
}

/** Deactivate the thin devices on the pool, remove it, detach its loop devices, remove the files it made. */
export async function removePool(o: PoolOptions & { name: string }): Promise<void> {
  const name = validatePoolName(o.name);
  await requireThinProvisioning();
  const store = new PoolStore(o.stateDir);
  const lock = await store.lock(name, 'devmapper pool remove');
  try {
    await teardownPool(store, await store.get(name), o.progress);
  } finally {
    await lock.release();
  }
}
