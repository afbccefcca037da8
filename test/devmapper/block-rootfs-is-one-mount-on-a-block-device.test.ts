import t from 'tap';
import { symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectBlockRootfs } from '../../devmapper/block-rootfs.js';
import { run } from '../../host/exec.js';
import { attachLoop } from '../../host/loop.js';
import { tempDir } from '../helpers/runtime-core.js';

// A loop device stands in for containerd's /dev/mapper/<pool>-snap-<id> (the kernel lab test
// checks the real one): what matters is a block device node the kernel has.
t.test('a single mount whose source is a block device: device, major:minor, fs type, options', async (t) => {
  const dir = tempDir(t, 'blkroot');
  const img = join(dir, 'rootfs.img');
  writeFileSync(img, '');
  truncateSync(img, 16 * 1024 * 1024);
  const dev = await attachLoop(img);
  t.teardown(() => run('losetup', ['--detach', dev], { reject: false }));
  const link = join(dir, 'by-name');
  symlinkSync(dev, link);
  const minor = Number(dev.replace('/dev/loop', ''));

  const r = await detectBlockRootfs([{ type: 'ext4', source: link, options: ['rw'] }], { disableBlockDeviceUse: false });
  t.same(r, { devicePath: dev, source: link, major: 7, minor, fsType: 'ext4', options: ['rw'], sizeBytes: 16 * 1024 * 1024 });

  const xfs = await detectBlockRootfs([{ type: 'xfs', source: dev }], { disableBlockDeviceUse: false });
  t.same(xfs?.options, ['nouuid'], 'xfs gets nouuid, as Kata adds it');

  t.equal(await detectBlockRootfs([{ type: 'ext4', source: dev }], { disableBlockDeviceUse: true }), undefined, 'disable_block_device_use');
  t.equal(
    await detectBlockRootfs(
      [
        { type: 'ext4', source: dev },
        { type: 'bind', source: dir },
      ],
      { disableBlockDeviceUse: false },
    ),
    undefined,
    'two mounts: not a block rootfs',
  );
});

t.test('overlay, a regular file, a missing source, a block node the kernel has no device for: undefined', async (t) => {
  const dir = tempDir(t, 'blkroot');
  const file = join(dir, 'plain.img');
  writeFileSync(file, 'x');
  const o = { disableBlockDeviceUse: false };
  t.equal(await detectBlockRootfs([{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a'] }], o), undefined);
  t.equal(await detectBlockRootfs([{ type: 'ext4', source: file }], o), undefined);
  t.equal(await detectBlockRootfs([{ type: 'ext4', source: join(dir, 'missing') }], o), undefined);
  t.equal(await detectBlockRootfs([], o), undefined);
  // A node for a major the kernel does not have (no /sys/dev/block entry).
  await run('mknod', [join(dir, 'ghost'), 'b', '240', '77']);
  t.equal(await detectBlockRootfs([{ type: 'ext4', source: join(dir, 'ghost') }], o), undefined);
});
