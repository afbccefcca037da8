/**
 * Block volumes end to end through the CLI, on one running sandbox (booted with a virtio-scsi
 * controller, so both drivers are there): a loop-backed ext4 volume as virtio-blk and an image file
 * as virtio-scsi are mounted where asked, written by the guest, released by `volume del` (gone from
 * the guest's /sys/block) and read back on the host; --readonly holds in the guest; a mounted host
 * device, a directory and a character device are refused with nothing changed; a fault at each step
 * of `volume add` (the fault file) leaves nothing and the same add works afterwards; a guest that
 * never releases the device (its root port removed in the guest) ends in the bounded timeout with the
 * volume still recorded, and `down` cleans everything.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { cli, parseJson, residue, tempRuntime, viewPids, type CliResult } from '../../helpers/sandbox.js';
import { guestKitOrSkip } from '../../helpers/runtime-core.js';

const { skip } = await guestKitOrSkip();

interface Volume {
  name: string;
  source: string;
  driver: string;
  readonly: boolean;
  guestDevice?: string;
  mountPoint: string;
}

const why = (r: CliResult): string => `exit ${r.code}: ${r.stderr.trim().slice(-400)}`;

t.test('volumes: blk and scsi mounted, written, released, read back on the host; refusals; faults; a stuck unplug', { skip }, async (t) => {
  const rt = tempRuntime(t, '[hypervisor.qemu]\nblock_device_driver = "virtio-scsi"\n');
  const faultFile = join(rt.dir, 'fault');
  writeFileSync(faultFile, '');
  const env = { KATA_RESOURCES_FAULT_FILE: faultFile };
  const id = `krt-vol-${process.pid}`;
  const c = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, ...c, '--json'], { env });
  t.equal(up.code, 0, `up: ${why(up)}`);
  const pids = viewPids(parseJson(up));
  t.teardown(() => cli(['sandbox', 'down', id, ...c]));
  const guest = async (script: string): Promise<CliResult> => cli(['exec', id, ...c, '--timeout', '60000', '--', 'sh', '-c', script]);
  const disks = async (): Promise<string> => (await guest('ls /sys/block')).stdout.trim();
  const before = await disks();

  // A loop device holding ext4, and an ext4 image file.
  const img1 = join(rt.dir, 'blk.img');
  const img2 = join(rt.dir, 'scsi.img');
  for (const img of [img1, img2]) {
    await run('truncate', ['-s', '32M', img]);
    await run('mkfs.ext4', ['-q', '-F', img]);
  }
  const loop = (await run('losetup', ['-f', '--show', img1])).stdout.trim();
  t.teardown(() => run('losetup', ['-d', loop], { reject: false }));

  // virtio-blk from the loop device.
  const a1 = await cli(['volume', 'add', id, '--source', loop, '--driver', 'virtio-blk', '--name', 'blk1', ...c, '--json']);
  t.equal(a1.code, 0, `add blk: ${why(a1)}`);
  const v1 = parseJson<Volume>(a1);
  t.match(v1, {
    name: 'blk1',
    source: loop,
    driver: 'virtio-blk',
    readonly: false,
    mountPoint: '/run/kata-containers/sandbox/volumes/blk1',
  });
  t.match(v1.guestDevice, /^[0-9a-f]{2}\/00$/, 'the guest found it at a PCI path');
  const m1 = await guest('grep " /run/kata-containers/sandbox/volumes/blk1 " /proc/mounts');
  t.match(m1.stdout, /ext4 rw/, 'mounted read-write as ext4');
  t.equal((await guest('echo from-guest-blk > /run/kata-containers/sandbox/volumes/blk1/f && sync')).code, 0, 'the guest writes');

  // virtio-scsi from the image file (the default driver of this configuration), mounted where asked.
  const a2 = await cli(['volume', 'add', id, '--source', img2, '--name', 'scsi1', '--mount-point', '/run/scsi', ...c, '--json']);
  t.equal(a2.code, 0, `add scsi: ${why(a2)}`);
  const v2 = parseJson<Volume>(a2);
  t.match(v2, { driver: 'virtio-scsi', mountPoint: '/run/scsi' });
  t.match(v2.guestDevice, /^\d+:0$/, 'a SCSI address');
  t.equal((await guest('grep -q " /run/scsi ext4 " /proc/mounts && echo from-guest-scsi > /run/scsi/f && sync')).code, 0);
  const l = parseJson<Volume[]>(await cli(['volume', 'list', id, ...c, '--json']));
  t.same(l.map((v) => v.name).sort(), ['blk1', 'scsi1']);

  // Released: gone from the guest, the host reads what the guest wrote.
  for (const name of ['blk1', 'scsi1']) {
    const d = await cli(['volume', 'del', id, name, ...c]);
    t.equal(d.code, 0, `del ${name}: ${why(d)}`);
  }
  t.equal(await disks(), before, "the guest's /sys/block is as before");
  const mnt = join(rt.dir, 'mnt');
  mkdirSync(mnt);
  for (const [src, text] of [
    [loop, 'from-guest-blk'],
    [img2, 'from-guest-scsi'],
  ] as const) {
    await run('mount', ['-o', 'ro', ...(src === img2 ? ['-o', 'loop'] : []), src, mnt]);
    try {
      t.equal(readFileSync(join(mnt, 'f'), 'utf8').trim(), text, `the host reads ${src}`);
    } finally {
      await run('umount', [mnt]);
    }
  }

  // --readonly holds in the guest.
  const ro = await cli(['volume', 'add', id, '--source', loop, '--driver', 'virtio-blk', '--readonly', '--name', 'ro1', ...c]);
  t.equal(ro.code, 0, `add read-only: ${why(ro)}`);
  const w = await guest('echo x > /run/kata-containers/sandbox/volumes/ro1/g');
  t.not(w.code, 0, 'a write to the read-only volume fails');
  t.match(w.stderr, /Read-only file system/);
  t.equal((await cli(['volume', 'del', id, 'ro1', ...c])).code, 0);

  // Refused, and nothing changed.
  await run('mount', [loop, mnt]);
  const busy = await cli(['volume', 'add', id, '--source', loop, ...c]);
  await run('umount', [mnt]);
  t.equal(busy.code, 1);
  t.match(busy.stderr, /E_DEVICE_BUSY: volume source .* is in use on the host \(.* is mounted at .*mnt\)/);
  for (const [src, msg] of [
    [rt.dir, /neither a block device nor a regular file/],
    ['/dev/null', /neither a block device nor a regular file/],
    [join(rt.dir, 'nope'), /does not exist/],
  ] as const) {
    const r = await cli(['volume', 'add', id, '--source', src, ...c]);
    t.equal(r.code, 1, `${src} refused`);
    t.match(r.stderr, msg);
  }
  t.same(parseJson<Volume[]>(await cli(['volume', 'list', id, ...c, '--json'])), [], 'no volume recorded');
  t.equal(await disks(), before, 'no disk reached the guest');

  // A fault at each step of the hotplug sequence: nothing left, and the same add works afterwards.
  for (const step of [
    'hotplug.volume.intent',
    'volume:check',
    'hotplug.volume.attached',
    'hotplug.volume.journalled',
    'hotplug:blockdev-added',
    'hotplug:device-added',
    'hotplug:path-resolved',
    'hotplug.volume.plugged',
    'hotplug.volume.completed',
  ]) {
    writeFileSync(faultFile, step);
    const f = await cli(['volume', 'add', id, '--source', loop, '--driver', 'virtio-blk', '--name', 'f1', ...c]);
    t.equal(f.code, 1, `${step}: add fails`);
    t.match(f.stderr, `fault injected at step ${step}`);
    t.same(parseJson<Volume[]>(await cli(['volume', 'list', id, ...c, '--json'])), [], `${step}: nothing recorded`);
    t.equal(await disks(), before, `${step}: no disk left in the guest`);
  }
  writeFileSync(faultFile, '');
  // The agent failing to mount (not a filesystem) is undone too.
  const raw = join(rt.dir, 'raw.img');
  await run('truncate', ['-s', '8M', raw]);
  const bad = await cli(['volume', 'add', id, '--source', raw, '--driver', 'virtio-blk', ...c]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /E_AGENT/);
  t.equal(await disks(), before, 'the failed mount left no disk');
  const again = await cli(['volume', 'add', id, '--source', loop, '--driver', 'virtio-blk', '--name', 'f1', ...c, '--json']);
  t.equal(again.code, 0, `after the faults the same add works: ${why(again)}`);

  // A guest that never releases the device: its root port is removed inside the guest.
  const slot = parseJson<Volume>(again).guestDevice!.split('/')[0]!;
  t.equal((await guest(`echo 1 > /sys/bus/pci/devices/0000:00:${slot}.0/remove`)).code, 0, 'root port removed in the guest');
  const stuck = await cli(['volume', 'del', id, 'f1', '--timeout', '3000', ...c]);
  t.equal(stuck.code, 1);
  t.match(stuck.stderr, /E_TIMEOUT: the guest did not release dev-vol-f1 within 3000 ms .*can be retried/);
  t.same(
    parseJson<Volume[]>(await cli(['volume', 'list', id, ...c, '--json'])).map((v) => v.name),
    ['f1'],
    'the volume stays recorded (consistent, retryable)',
  );

  const down = await cli(['sandbox', 'down', id, ...c]);
  t.equal(down.code, 0, `down: ${why(down)}`);
  t.same(await residue(rt, { id, pids }), [], 'nothing of the sandbox is left');
});
