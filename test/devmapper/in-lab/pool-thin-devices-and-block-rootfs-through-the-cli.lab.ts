/**
 * Runs inside the kernel lab (test/devmapper/thin-pool-and-thin-devices-work-in-the-kernel-lab.test.ts):
 * the devmapper CLI on a real thin pool, and the library for the cases around it. Every node start
 * costs seconds under TCG, so the CLI runs once per command it proves.
 */
import t from 'tap';
import { mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectBlockRootfs } from '../../../devmapper/block-rootfs.js';
import { dmTable } from '../../../devmapper/dmsetup.js';
import { createPool, createThin, createSnapshot, poolStatus, removePool } from '../../../devmapper/index.js';
import { run } from '../../../host/exec.js';
import { attachLoop, listLoops } from '../../../host/loop.js';
import { cli, explain, parseJson, tempRuntime } from '../../helpers/sandbox.js';
import { dmDevicesOf, poolLeftovers } from './pool-leftovers.js';

const M = 1024 ** 2;
const dm = (args: string[]) => run('dmsetup', args, { env: { DM_DISABLE_UDEV: '1' } });

t.test('CLI: pool on loop files, thin device with a file system, snapshot of the active origin, pool remove', async (t) => {
  const rt = tempRuntime(t);
  const pool = 'krt-pool';
  const data = join(rt.dir, 'data.img');
  const meta = join(rt.dir, 'meta.img');
  const dmCli = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await cli(['devmapper', ...args, '--state-dir', rt.stateDir, '--json']);
    if (r.code !== 0) t.comment(explain(r));
    t.equal(r.code, 0, `devmapper ${args.join(' ')}`);
    return parseJson<T>(r);
  };
  t.teardown(() => removePool({ stateDir: rt.stateDir, name: pool }).catch(() => {}));

  const created = await dmCli<{ containerdConfig: string; madeLoops: string[] }>([
    'pool',
    'create',
    pool,
    '--data-file',
    data,
    '--metadata-file',
    meta,
    '--size',
    '512M',
  ]);
  t.match(created, { name: pool, device: `/dev/mapper/${pool}`, blockSizeBytes: 65536, dataBytes: 512 * M, madeFiles: [data, meta] });
  t.match(
    created.containerdConfig,
    /^\[plugins\."io\.containerd\.snapshotter\.v1\.devmapper"\]\n {2}pool_name = "krt-pool"\n {2}root_path = "\/var\/lib\/containerd\/devmapper"\n {2}base_image_size = "10GB"\n/,
  );
  t.equal(created.madeLoops.length, 2);
  const [line] = await dmTable(pool);
  t.same(
    [line?.target, line?.args[2], line?.args[4], line?.args[5]],
    ['thin-pool', '128', '1', 'skip_block_zeroing'],
    "containerd's table shape, 64 KiB blocks",
  );
  t.ok(statSync(`/dev/mapper/${pool}`).isBlockDevice(), 'the node exists without udev');
  t.equal(statSync(data).size, 512 * M);
  t.ok(statSync(data).blocks * 512 < 4 * M, 'the data file is sparse');

  // A thin device with a file system and a file on it.
  t.match(await dmCli(['thin', 'create', pool, '1', '128M']), { pool, id: 1, sizeBytes: 128 * M });
  const a = await dmCli<{ device: string }>(['thin', 'activate', pool, '1']);
  t.equal(a.device, `/dev/mapper/${pool}-thin-1`);
  const mnt = join(rt.dir, 'mnt');
  mkdirSync(mnt);
  await run('mkfs.ext4', ['-q', '-E', 'nodiscard', a.device], { timeoutMs: 300_000 });
  await run('mount', [a.device, mnt]);
  writeFileSync(join(mnt, 'hello'), 'written on thin 1\n');
  await run('umount', [mnt]);

  // Snapshot while the origin is active: suspended for the message, resumed after.
  t.match(await dmCli(['thin', 'snapshot', pool, '1', '2']), { id: 2, origin: 1, sizeBytes: 128 * M });
  t.match((await dm(['info', '-c', '--noheadings', '-o', 'attr', `${pool}-thin-1`])).stdout.trim(), /^L-[^s]/, 'the origin was resumed');
  const b = (await poolStatus({ stateDir: rt.stateDir, name: pool })).thins;
  t.same(
    b.map((x) => [x.id, x.origin, x.device]),
    [
      [1, undefined, `/dev/mapper/${pool}-thin-1`],
      [2, 1, undefined],
    ],
  );

  const st = await dmCli<{ status: { usedDataBlocks: number; totalDataBlocks: number; mode: string } }>(['pool', 'status', pool]);
  t.match(st.status, { totalDataBlocks: 8192, mode: 'rw' });
  t.ok(st.status.usedDataBlocks > 0, 'the pool holds the file system');

  // The snapshot as a block rootfs: what the shim will see from containerd's snapshotter.
  const { activateThin } = await import('../../../devmapper/index.js');
  const snap = await activateThin({ stateDir: rt.stateDir, pool, id: 2 });
  await run('mount', ['-o', 'ro', snap.device, mnt]);
  t.equal(readFileSync(join(mnt, 'hello'), 'utf8'), 'written on thin 1\n', "the snapshot has the origin's file");
  await run('umount', [mnt]);
  const info = (await dm(['info', '-c', '--noheadings', '--separator', ':', '-o', 'major,minor', `${pool}-thin-2`])).stdout
    .trim()
    .split(':')
    .map(Number);
  t.match(await detectBlockRootfs([{ type: 'ext4', source: snap.device, options: [] }], { disableBlockDeviceUse: false }), {
    source: snap.device,
    major: info[0],
    minor: info[1],
    fsType: 'ext4',
    sizeBytes: 128 * M,
  });

  t.match(await dmCli(['thin', 'deactivate', pool, '2']), { id: 2 });
  t.same((await dmDevicesOf(pool)).sort(), [pool, `${pool}-thin-1`], 'thin 2 is inactive');
  t.same(await dmCli(['thin', 'remove', pool, '2']), { pool, id: 2, state: 'removed' });

  // Remove the pool with thin 1 still active: everything goes.
  t.same(await dmCli(['pool', 'remove', pool]), { name: pool, state: 'removed' });
  t.same(await poolLeftovers(pool, rt.stateDir, [data, meta]), [], 'no dm device, no loop device, no file, no state');
});

t.test('library: ids, refusals that change nothing', async (t) => {
  const rt = tempRuntime(t);
  const pool = 'krt-ids';
  const files = [join(rt.dir, 'd.img'), join(rt.dir, 'm.img')];
  const o = { stateDir: rt.stateDir };
  t.teardown(() => removePool({ ...o, name: pool }).catch(() => {}));
  await createPool({ ...o, name: pool, source: { kind: 'files', dataFile: files[0]!, metadataFile: files[1]!, sizeBytes: 64 * M } });
  t.equal((await createThin({ ...o, pool, sizeBytes: 8 * M })).id, 1, 'the allocator starts at 1');
  t.equal((await createThin({ ...o, pool, id: 5, sizeBytes: 8 * M })).id, 5);
  t.equal((await createThin({ ...o, pool, sizeBytes: 8 * M })).id, 2);
  t.equal((await createSnapshot({ ...o, pool, originId: 5 })).id, 3, 'a snapshot of an inactive origin');
  await t.rejects(createThin({ ...o, pool, id: 5, sizeBytes: 8 * M }), {
    code: 'E_INVALID_ARGUMENT',
    message: /already has a thin device 5/,
  });
  await t.rejects(createSnapshot({ ...o, pool, originId: 99 }), { code: 'E_INVALID_ARGUMENT', message: /no thin device 99/ });
  await t.rejects(
    createPool({ ...o, name: pool, source: { kind: 'files', dataFile: files[0]!, metadataFile: files[1]!, sizeBytes: 64 * M } }),
    {
      code: 'E_INVALID_ARGUMENT',
      message: /exists/,
    },
  );
  t.same(
    (await poolStatus({ ...o, name: pool })).thins.map((x) => x.id),
    [1, 5, 2, 3],
    'the refusals changed nothing',
  );
  await removePool({ ...o, name: pool });
  t.same(await poolLeftovers(pool, rt.stateDir, files), []);
});

t.test('library: a pool on given devices, or on given files, leaves them when removed', async (t) => {
  const rt = tempRuntime(t);
  const pool = 'krt-given';
  const o = { stateDir: rt.stateDir };
  const files = ['d.img', 'm.img'].map((f) => join(rt.dir, f));
  for (const f of files) {
    writeFileSync(f, '');
    truncateSync(f, 128 * M);
  }
  const [d, m] = [await attachLoop(files[0]!), await attachLoop(files[1]!)];
  t.teardown(async () => {
    await removePool({ ...o, name: pool }).catch(() => {});
    for (const l of [d, m]) await run('losetup', ['--detach', l], { reject: false });
  });
  t.match(await createPool({ ...o, name: pool, source: { kind: 'devices', data: d, metadata: m }, blockSizeBytes: 128 * 1024 }), {
    dataDevice: d,
    metadataDevice: m,
    blockSizeBytes: 128 * 1024,
    madeFiles: [],
    madeLoops: [],
  });
  await removePool({ ...o, name: pool });
  t.same(await dmDevicesOf(pool), []);
  const loops = (await listLoops()).map((l) => l.device);
  t.ok(loops.includes(d) && loops.includes(m), 'the given loop devices stay attached');

  for (const l of [d, m]) await run('losetup', ['--detach', l]);
  const p = await createPool({
    ...o,
    name: pool,
    source: { kind: 'files', dataFile: files[0]!, metadataFile: files[1]!, sizeBytes: 1024 * M },
  });
  t.match(p, { dataBytes: 128 * M, madeFiles: [] }, 'an existing file is used as it is');
  await removePool({ ...o, name: pool });
  for (const x of files) t.ok(statSync(x).isFile(), `${x} is still there`);
  t.same(await poolLeftovers(pool, rt.stateDir, []), []);
  t.same(
    (await listLoops()).filter((l) => files.includes(l.backingFile)),
    [],
    'the loop devices the pool attached are gone',
  );
});
