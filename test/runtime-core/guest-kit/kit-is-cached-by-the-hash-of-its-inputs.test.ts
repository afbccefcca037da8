import t from 'tap';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
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
  t.same({ ...second, outcome: first.outcome }, first, 'same kit');
  t.equal(second.outcome, 'reused', 'reported as reused');
  t.equal(progress, 0, 'no build step reported');
  t.equal((await stat(second.rootfs)).mtimeMs, mtime, 'rootfs untouched');
  t.equal(await guestKitInputsHash(), first.hash, 'the cache key is the hash of the current inputs');
  t.equal(first.dir, join(guestKitDir(), first.hash), 'kits live under <cache dir>/<hash>');

  // The fast path's pointer is this checkout's own: another checkout's pointer (another source
  // tree, another kit) beside it is neither read nor overwritten.
  const other = join(guestKitDir(), `current-${'0'.repeat(12)}.json`);
  const otherText = JSON.stringify({ hash: 'f'.repeat(20), fingerprint: 'x', paths: [] });
  await writeFile(other, otherText);
  t.teardown(() => rm(other, { force: true }));
  const third = await ensureGuestKit({ log: silentLogger() });
  t.equal(third.hash, first.hash, 'a foreign pointer does not change the kit');
  t.equal(await readFile(other, 'utf8'), otherText, 'nor is it overwritten');
  const mine = (await readdir(guestKitDir())).filter(
    (f) => /^current-[0-9a-f]{12}\.json$/.test(f) && !f.startsWith('current-000000000000'),
  );
  const pointing: string[] = [];
  for (const f of mine) if (JSON.parse(await readFile(join(guestKitDir(), f), 'utf8')).hash === first.hash) pointing.push(f);
  t.ok(pointing.length >= 1, `a current-<root hash>.json points at ${first.hash}: ${mine.join(' ')}`);

  const record = JSON.parse(await readFile(join(first.dir, 'kit.json'), 'utf8'));
  t.match(record.inputs, {
    kernel: { name: 'linux-source-6.1', build: /^[0-9a-f]{16}$/ },
    binaries: { node: /^[0-9a-f]{64}$/, busybox: /^[0-9a-f]{64}$/, ip: /^[0-9a-f]{64}$/, runc: /^[0-9a-f]{64}$/ },
    agent: /^[0-9a-f]{64}$/,
    monitor: /^[0-9a-f]{64}$/,
  });
  t.equal(first.kernelSource, 'built', 'the default kit boots the kernel built from linux-source');
  t.same(record.modules.load, [], 'its initramfs carries no modules (all built in)');
  for (const f of [first.kernel, first.initrd, first.rootfs]) t.ok((await stat(f)).size > 0, `${f} present`);
});
