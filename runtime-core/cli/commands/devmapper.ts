/**
 * `kata-resources devmapper ...`: thin pools and thin devices (devmapper/), with the pool state
 * under the configured state_dir. Test hooks for `pool create`: KATA_RESOURCES_FAULT=<step> fails
 * at that step (the create undoes itself), KATA_RESOURCES_CRASH=<step> kills the process there
 * (`pool remove` cleans up); steps: state, data-file, data-loop, metadata-file, metadata-loop,
 * metadata-zeroed, pool-device.
 */
import { KataError } from '../../../host/errors.js';
import {
  CONFIG_OPTION,
  JSON_OPTION,
  flag,
  str,
  usageError,
  type CliIo,
  type Command,
  type Invocation,
  type OptionSpec,
} from '../command.js';

const common = {
  'state-dir': { type: 'string', value: 'DIR', describe: 'pool state directory (default: [runtime] state_dir of the configuration)' },
  config: CONFIG_OPTION,
  json: JSON_OPTION,
} as const satisfies Record<string, OptionSpec>;

/** --state-dir, else the configuration's state_dir (loading the configuration only then: it costs a schema compile). */
async function stateDir(inv: Invocation, io: CliIo): Promise<string> {
  const given = str(inv, 'state-dir');
  if (given) return given;
  const { loadConfig } = await import('../../config/load-config.js');
  return loadConfig(str(inv, 'config'), { log: io.log, checkFiles: false }).runtime.stateDir;
}

const lib = () => import('../../../devmapper/index.js');

function checkpointFromEnv(): ((step: string) => void) | undefined {
  const fault = process.env.KATA_RESOURCES_FAULT;
  const crash = process.env.KATA_RESOURCES_CRASH;
  if (!fault && !crash) return undefined;
  return (step) => {
    if (step === crash) process.kill(process.pid, 'SIGKILL');
    if (step === fault) throw new KataError('E_INTERNAL', `fault injected at step ${step} (KATA_RESOURCES_FAULT)`);
  };
}

/** An id argument: a number, or "auto" where the pool's allocator may choose. */
async function idArg(text: string, what: string, auto: boolean): Promise<number | undefined> {
  if (auto && text === 'auto') return undefined;
  return (await lib()).parseThinId(text, what);
}

const poolCreate: Command = {
  words: ['devmapper', 'pool', 'create'],
  synopsis: 'NAME (--data DEV --metadata DEV | --data-file PATH --metadata-file PATH --size SIZE) [--block-size 64k] [--json]',
  description:
    "Create a device-mapper thin pool as containerd's devmapper snapshotter uses it, and print the containerd\n" +
    'configuration for it ([plugins."io.containerd.snapshotter.v1.devmapper"]). From two block devices, or from\n' +
    'two sparse files on loop devices (made if missing; only what the pool made is removed with it). The first\n' +
    '4 KiB of the metadata device are zeroed. Needs device-mapper with dm_thin_pool (E_KERNEL_FEATURE otherwise).',
  options: {
    data: { type: 'string', value: 'DEV', describe: 'data block device' },
    metadata: { type: 'string', value: 'DEV', describe: 'metadata block device (its first 4 KiB are zeroed)' },
    'data-file': { type: 'string', value: 'PATH', describe: 'data file (a sparse file of --size is made if missing)' },
    'metadata-file': { type: 'string', value: 'PATH', describe: 'metadata file (made if missing)' },
    size: { type: 'string', value: 'SIZE', describe: 'size of the data file the pool makes, e.g. 10G' },
    'metadata-size': {
      type: 'string',
      value: 'SIZE',
      describe: 'size of the metadata file it makes (default: from --size, 16 MiB at least)',
    },
    'block-size': { type: 'string', value: 'SIZE', describe: 'pool block size, a multiple of 64k (default 64k)' },
    'low-water-mark': { type: 'string', value: 'BLOCKS', describe: 'free blocks below which dm raises an event (default min(32768, 10%))' },
    'root-path': {
      type: 'string',
      value: 'DIR',
      describe: 'containerd root_path in the printed config (default /var/lib/containerd/devmapper)',
    },
    'base-image-size': { type: 'string', value: 'SIZE', describe: 'containerd base_image_size in the printed config (default 10GB)' },
    ...common,
  },
  args: [{ name: 'NAME' }],
  async run(inv, io) {
    const d = await lib();
    const [dev, meta, dataFile, metaFile, size] = ['data', 'metadata', 'data-file', 'metadata-file', 'size'].map((k) => str(inv, k));
    let source: Parameters<typeof d.createPool>[0]['source'];
    if (dev || meta) {
      if (!dev || !meta || dataFile || metaFile || size)
        throw usageError('devmapper pool create takes --data DEV --metadata DEV, or --data-file/--metadata-file/--size, not a mix');
      source = { kind: 'devices', data: dev, metadata: meta };
    } else {
      if (!dataFile || !metaFile || !size)
        throw usageError('devmapper pool create needs --data DEV --metadata DEV, or --data-file PATH --metadata-file PATH --size SIZE');
      const metaSize = str(inv, 'metadata-size');
      source = {
        kind: 'files',
        dataFile,
        metadataFile: metaFile,
        sizeBytes: d.parseSize(size, '--size'),
        ...(metaSize ? { metadataSizeBytes: d.parseSize(metaSize, '--metadata-size') } : {}),
      };
    }
    const bs = str(inv, 'block-size');
    const lw = str(inv, 'low-water-mark');
    if (lw !== undefined && !/^\d+$/.test(lw)) throw usageError(`--low-water-mark must be a number of blocks (got "${lw}")`);
    const baseImageSize = str(inv, 'base-image-size') ?? '10GB';
    d.parseSize(baseImageSize, '--base-image-size');
    const checkpoint = checkpointFromEnv();
    const pool = await d.createPool({
      stateDir: await stateDir(inv, io),
      name: inv.args[0]!,
      source,
      ...(bs ? { blockSizeBytes: d.parseSize(bs, '--block-size') } : {}),
      ...(lw ? { lowWaterMark: Number(lw) } : {}),
      progress: io.progress,
      ...(checkpoint ? { checkpoint } : {}),
    });
    const snippet = d.containerdSnippet(pool.name, str(inv, 'root-path') ?? '/var/lib/containerd/devmapper', baseImageSize);
    if (flag(inv, 'json')) io.out(JSON.stringify({ ...pool, containerdConfig: snippet }));
    else {
      io.out(
        `created thin pool ${pool.name}: ${pool.device} (data ${pool.dataDevice} ${d.formatSize(pool.dataBytes)}, metadata ${pool.metadataDevice}, block ${d.formatSize(pool.blockSizeBytes)})`,
      );
      io.out(`\n# containerd config.toml (version 2):\n${snippet}`);
    }
    return 0;
  },
};

const poolStatus: Command = {
  words: ['devmapper', 'pool', 'status'],
  synopsis: 'NAME [--json]',
  description: 'Data and metadata usage (dmsetup status), the thin devices made here, pending journal entries.',
  options: common,
  args: [{ name: 'NAME' }],
  async run(inv, io) {
    const d = await lib();
    const s = await d.poolStatus({ stateDir: await stateDir(inv, io), name: inv.args[0]! });
    if (flag(inv, 'json')) {
      io.out(JSON.stringify(s));
      return 0;
    }
    io.out(
      `thin pool ${s.name}: ${s.phase}, ${s.device} (data ${s.dataDevice}, metadata ${s.metadataDevice}, block ${d.formatSize(s.blockSizeBytes)})`,
    );
    if (s.status) {
      const pct = (a: number, b: number): string => `${b ? ((100 * a) / b).toFixed(1) : '0'}%`;
      io.out(
        `  data ${s.status.usedDataBlocks}/${s.status.totalDataBlocks} blocks (${pct(s.status.usedDataBytes, s.status.totalDataBytes)})`,
      );
      io.out(
        `  metadata ${s.status.usedMetadataBlocks}/${s.status.totalMetadataBlocks} blocks (${pct(s.status.usedMetadataBytes, s.status.totalMetadataBytes)})`,
      );
      io.out(`  ${s.status.mode} ${s.status.flags.join(' ')}, transaction ${s.status.transactionId}`);
    } else io.out('  the pool device is not there');
    for (const t of s.thins)
      io.out(
        `  thin ${t.id}: ${d.formatSize(t.sizeBytes)}${t.origin !== undefined ? `, snapshot of ${t.origin}` : ''}${t.device ? `, active ${t.device}` : ''}`,
      );
    if (s.pendingIntents.length)
      io.out(`  pending: ${s.pendingIntents.map((i) => i.op).join(', ')} (a crashed run; pool remove cleans up)`);
    return 0;
  },
};

const poolRemove: Command = {
  words: ['devmapper', 'pool', 'remove'],
  synopsis: 'NAME [--json]',
  description:
    'Deactivate the thin devices on the pool, remove the pool device, detach the loop devices it attached and\n' +
    'remove the files it made (never files it was given). Also cleans a pool whose create crashed part-way.',
  options: common,
  args: [{ name: 'NAME' }],
  async run(inv, io) {
    const d = await lib();
    const name = inv.args[0]!;
    await d.removePool({ stateDir: await stateDir(inv, io), name, progress: io.progress });
    io.out(flag(inv, 'json') ? JSON.stringify({ name, state: 'removed' }) : `removed thin pool ${name}`);
    return 0;
  },
};

function thinOut(
  io: CliIo,
  inv: Invocation,
  t: { pool: string; id: number; sizeBytes: number; origin?: number; device?: string },
  verb: string,
): void {
  io.out(flag(inv, 'json') ? JSON.stringify(t) : `${verb} thin device ${t.id} in ${t.pool}${t.device ? `: ${t.device}` : ''}`);
}

const thinCreate: Command = {
  words: ['devmapper', 'thin', 'create'],
  synopsis: 'POOL ID|auto SIZE [--json]',
  description: 'A new thin device (create_thin) of SIZE (e.g. 1G) in the pool; "auto" takes the next free id.',
  options: common,
  args: [{ name: 'POOL' }, { name: 'ID' }, { name: 'SIZE' }],
  async run(inv, io) {
    const d = await lib();
    const [pool, id, size] = inv.args as [string, string, string];
    const idn = await idArg(id, 'ID', true);
    const t = await d.createThin({
      stateDir: await stateDir(inv, io),
      pool,
      sizeBytes: d.parseSize(size, 'SIZE'),
      ...(idn !== undefined ? { id: idn } : {}),
    });
    thinOut(io, inv, t, 'created');
    return 0;
  },
};

const thinSnapshot: Command = {
  words: ['devmapper', 'thin', 'snapshot'],
  synopsis: 'POOL ORIGIN_ID NEW_ID|auto [--json]',
  description: 'A snapshot (create_snap) of a thin device; an active origin is suspended for it and resumed.',
  options: common,
  args: [{ name: 'POOL' }, { name: 'ORIGIN_ID' }, { name: 'NEW_ID' }],
  async run(inv, io) {
    const d = await lib();
    const [pool, origin, id] = inv.args as [string, string, string];
    const idn = await idArg(id, 'NEW_ID', true);
    const t = await d.createSnapshot({
      stateDir: await stateDir(inv, io),
      pool,
      originId: d.parseThinId(origin, 'ORIGIN_ID'),
      ...(idn !== undefined ? { id: idn } : {}),
    });
    thinOut(io, inv, t, 'created');
    return 0;
  },
};

function thinAction(word: 'activate' | 'deactivate' | 'remove', description: string, verb: string): Command {
  const c: Command = {
    words: ['devmapper', 'thin', word],
    synopsis: 'POOL ID [--json]',
    description,
    options: common,
    args: [{ name: 'POOL' }, { name: 'ID' }],
    async run(inv, io) {
      const d = await lib();
      const [pool, id] = inv.args as [string, string];
      const o = { stateDir: await stateDir(inv, io), pool, id: d.parseThinId(id, 'ID') };
      if (word === 'remove') {
        await d.removeThin(o);
        io.out(flag(inv, 'json') ? JSON.stringify({ pool, id: o.id, state: 'removed' }) : `removed thin device ${o.id} from ${pool}`);
      } else thinOut(io, inv, await (word === 'activate' ? d.activateThin(o) : d.deactivateThin(o)), verb);
      return 0;
    },
  };
  return c;
}

export const DEVMAPPER_COMMANDS: readonly Command[] = [
  poolCreate,
  poolStatus,
  poolRemove,
  thinCreate,
  thinSnapshot,
  thinAction('activate', 'Activate a thin device as /dev/mapper/<pool>-thin-<id> (prints the device).', 'activated'),
  thinAction('deactivate', 'Deactivate a thin device (its data stays in the pool).', 'deactivated'),
  thinAction('remove', 'Deactivate a thin device if active and delete it from the pool.', 'removed'),
];
