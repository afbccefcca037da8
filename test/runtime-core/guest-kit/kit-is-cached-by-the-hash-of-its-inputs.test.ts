import t from 'tap';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureGuestKit, guestKitDir, guestKitInputsHash } from '../../../runtime-core/guest-kit/index.js';
import { silentLogger } from '../../../host/log.js';

t.test('a second ensure returns the same kit without building; its hash is the inputs hash', async (t) => {
  const first = await ensureGuestKit({ log: silentLogger() });
  const mtime = (await stat(first.rootfs)).mtimeMs;
  let progress = 0;
  const second = await ensureGuestKit({
    log: silentLogger(),
    onProgress: () => {
      progress++;
    },
  });
  t.same(second, first, 'same kit');
  t.equal(progress, 0, 'no build step reported');
  t.equal((await stat(second.rootfs)).mtimeMs, mtime, 'rootfs untouched');
  t.equal(await guestKitInputsHash(), first.hash, 'the cache key is the hash of the current inputs');
  t.equal(first.dir, join(guestKitDir(), first.hash), 'kits live under <cache dir>/<hash>');

  const record = JSON.parse(await readFile(join(first.dir, 'kit.json'), 'utf8'));
  t.match(record.inputs, {
    kernel: { name: /^linux-image-/ },
    binaries: { node: /^[0-9a-f]{64}$/, busybox: /^[0-9a-f]{64}$/, ip: /^[0-9a-f]{64}$/, runc: /^[0-9a-f]{64}$/ },
    agent: /^[0-9a-f]{64}$/,
    monitor: /^[0-9a-f]{64}$/,
  });
  t.ok(
    record.modules.load.some((m: string) => m.endsWith('/ext4.ko')),
    'the initramfs carries ext4',
  );
  t.ok(
    record.modules.load.indexOf(record.modules.load.find((m: string) => m.endsWith('/jbd2.ko'))) <
      record.modules.load.indexOf(record.modules.load.find((m: string) => m.endsWith('/ext4.ko'))),
    'jbd2 before ext4',
  );
  for (const f of [first.kernel, first.initrd, first.rootfs]) t.ok((await stat(f)).size > 0, `${f} present`);
});
