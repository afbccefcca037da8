import t from 'tap';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Storage } from '../../../host/agent-types.js';
import { spawnRunner, type CommandRunner } from '../../../guest/agent/runner.js';
import { addStorages, listMounts, readMounts, removeStorages, type StorageContext } from '../../../guest/agent/storage.js';

const storage = (over: Partial<Storage>): Storage => ({
  driver: 'virtio-fs',
  driver_options: [],
  source: '',
  fstype: '',
  options: [],
  mount_point: '',
  ...over,
});

async function tempDir(t: { teardown(fn: () => unknown): void }, tag: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `krt-${tag}-`));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

t.test('ephemeral storage is a real tmpfs mount; repeating is idempotent; RemoveStorages unmounts', async (t) => {
  const dir = await tempDir(t, 'stor');
  const mp = join(dir, 'eph', 'nested');
  const ctx: StorageContext = { run: spawnRunner, sysfs: '/sys', dev: '/dev', mountsFile: '/proc/self/mounts' };
  t.teardown(() => spawnRunner('umount', [mp]));
  const r = await addStorages(ctx, [
    storage({ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: ['size=1m', 'mode=0700'], mount_point: mp }),
  ]);
  t.same(r.mount_points, [mp]);
  const m = (await listMounts(ctx)).mounts.find((x) => x.mount_point === mp);
  t.equal(m?.fstype, 'tmpfs', 'mounted, and the mount point was created');
  t.ok(m?.options.includes('size=1024k'), 'options passed through');
  await addStorages(ctx, [storage({ driver: 'ephemeral', fstype: 'tmpfs', mount_point: mp })]);
  t.equal((await readMounts(ctx.mountsFile)).filter((x) => x.mount_point === mp).length, 1, 'not mounted twice');
  await removeStorages(ctx, [{ mount_point: mp }]);
  t.notOk(
    (await readMounts(ctx.mountsFile)).some((x) => x.mount_point === mp),
    'unmounted',
  );
  await removeStorages(ctx, [{ mount_point: mp }]);
  t.pass('removing an absent mount is not an error');
});

t.test('each driver resolves its source into the mount command', async (t) => {
  const dir = await tempDir(t, 'stor');
  // Fake sysfs/dev: virtio-blk vdb at PCI path 02/00; scsi 0:0:1:2 -> sdc; pmem0.
  const sysfs = join(dir, 'sys');
  const dev = join(dir, 'dev');
  await mkdir(join(sysfs, 'devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio4/block/vdb'), { recursive: true });
  await mkdir(join(sysfs, 'bus/scsi/devices/0:0:1:2/block/sdc'), { recursive: true });
  for (const b of ['vdb', 'sdc', 'pmem0']) {
    await mkdir(join(sysfs, 'class/block', b), { recursive: true });
    await writeFile(join(sysfs, 'class/block', b, 'dev'), '254:16\n');
  }
  await mkdir(dev);
  for (const b of ['vdb', 'sdc', 'pmem0']) await writeFile(join(dev, b), '');
  const mounts = join(dir, 'mounts');
  await writeFile(mounts, '');
  const calls: string[][] = [];
  const run: CommandRunner = async (file, args) => {
    calls.push([file, ...args]);
    return { stdout: '', stderr: '', exitCode: 0, timedOut: false, truncated: false };
  };
  const ctx: StorageContext = { run, sysfs, dev, mountsFile: mounts, deviceTimeoutMs: 300 };
  const mp = (n: string): string => join(dir, 'mnt', n);
  await addStorages(ctx, [
    storage({ driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: ['nodev'], mount_point: mp('shared') }),
    storage({ driver: 'blk', source: '02/00', fstype: 'ext4', options: ['ro'], mount_point: mp('blk') }),
    storage({ driver: 'scsi', source: '1:2', fstype: 'xfs', mount_point: mp('scsi') }),
    storage({ driver: 'nvdimm', source: '/dev/pmem0', fstype: 'ext4', options: ['dax'], mount_point: mp('pmem') }),
    storage({ driver: '9p', source: 'kataShared', mount_point: mp('9p') }),
  ]);
  t.same(calls, [
    ['mount', '-t', 'virtiofs', '-o', 'nodev', 'kataShared', mp('shared')],
    ['mount', '-t', 'ext4', '-o', 'ro', join(dev, 'vdb'), mp('blk')],
    ['mount', '-t', 'xfs', join(dev, 'sdc'), mp('scsi')],
    ['mount', '-t', 'ext4', '-o', 'dax', join(dev, 'pmem0'), mp('pmem')],
    ['mount', '-t', '9p', '-o', 'trans=virtio', 'kataShared', mp('9p')],
  ]);
  t.ok((await stat(mp('shared'))).isDirectory(), 'mount points are created');

  await addStorages(ctx, [storage({ driver: 'local', mount_point: mp('local'), options: ['mode=0777'] })]);
  t.equal((await stat(mp('local'))).mode & 0o777, 0o777, 'local storage is a directory with the asked mode');

  await t.rejects(addStorages(ctx, [storage({ driver: 'blk', source: '03/00', mount_point: mp('x') })]), {
    code: 'E_DEVICE_TIMEOUT',
    message: /03\/00/,
  });
  await t.rejects(addStorages(ctx, [storage({ driver: 'virtio-fs', mount_point: 'relative/path' })]), { code: 'E_INVALID_ARGUMENT' });
  await t.rejects(addStorages(ctx, [storage({ driver: 'virtio-fs', mount_point: '/a/../b' })]), { code: 'E_INVALID_ARGUMENT' });
  await t.rejects(addStorages(ctx, [storage({ driver: 'virtio-fs', mount_point: mp('y'), options: ['a,b'] })]), {
    code: 'E_INVALID_ARGUMENT',
  });

  const failing: StorageContext = {
    ...ctx,
    run: async () => ({ stdout: '', stderr: 'mount: unknown filesystem type', exitCode: 32, timedOut: false, truncated: false }),
  };
  await t.rejects(addStorages(failing, [storage({ driver: 'virtio-fs', mount_point: mp('z') })]), {
    code: 'E_MOUNT',
    message: /unknown filesystem type/,
  });
});

t.test('a virtio-fs share kata-init mounted at boot is found (trailing slash or not) and not mounted again', async (t) => {
  const dir = await tempDir(t, 'stor-boot');
  const mp = join(dir, 'shared', 'containers');
  const mountsFile = join(dir, 'mounts');
  await writeFile(mountsFile, `kataShared ${mp} virtiofs rw,relatime 0 0\n`);
  const calls: string[][] = [];
  const ctx: StorageContext = {
    run: async (_cmd, args) => {
      calls.push([...args]);
      return { stdout: '', stderr: '', exitCode: 0, timedOut: false, truncated: false };
    },
    sysfs: '/sys',
    dev: '/dev',
    mountsFile,
  };
  const share = storage({ driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', mount_point: `${mp}/` });
  t.same((await addStorages(ctx, [share])).mount_points, [`${mp}/`]);
  await addStorages(ctx, [{ ...share, mount_point: mp }]);
  t.same(calls, [], 'no mount process');
  await addStorages(ctx, [{ ...share, mount_point: join(dir, 'other') }]);
  t.equal(calls.length, 1, 'another mount point is mounted as before');
});
