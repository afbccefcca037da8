import t from 'tap';
import { rmSync, writeFileSync, truncateSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { attachLoop, detachLoopOf, fileIdentity, listLoops, loopsOf } from '../../host/loop.js';
import { run } from '../../host/exec.js';
import { tempDir } from '../helpers/runtime-core.js';

/** Detach a device the test attached, whatever happens to the assertions. */
function cleanup(t: { teardown(fn: () => unknown): void }, dev: string): void {
  t.teardown(() => run('losetup', ['--detach', dev], { reject: false }));
}

t.test('attach, find by backing file, detach: only the device backed by our file', async (t) => {
  const dir = tempDir(t, 'loop');
  const ours = join(dir, 'ours.img');
  const other = join(dir, 'other.img');
  for (const f of [ours, other]) {
    writeFileSync(f, '');
    truncateSync(f, 8 * 1024 * 1024);
  }
  const id = await fileIdentity(ours);
  const dev = await attachLoop(ours);
  cleanup(t, dev);
  const otherDev = await attachLoop(other);
  cleanup(t, otherDev);
  t.match(dev, /^\/dev\/loop\d+$/);
  t.same(
    (await loopsOf(id)).map((l) => l.device),
    [dev],
    'found by the identity of its backing file',
  );
  t.ok((await listLoops()).some((l) => l.device === otherDev && l.backingFile === other));

  t.equal(await detachLoopOf(otherDev, id), false, 'a device backed by another file is not ours: left alone');
  t.ok(
    (await listLoops()).some((l) => l.device === otherDev),
    'still attached',
  );

  t.equal(await detachLoopOf(dev, id), true);
  t.same(await loopsOf(id), [], 'detached');
  t.equal(await detachLoopOf(dev, id), false, 'detaching again is harmless');
});

t.test('a file replaced at the same path is not the file we attached', async (t) => {
  const dir = tempDir(t, 'loop');
  const path = join(dir, 'pool.img');
  writeFileSync(path, '');
  truncateSync(path, 8 * 1024 * 1024);
  const id = await fileIdentity(path);
  // Someone else's file now lives at the path, attached by them.
  renameSync(path, join(dir, 'moved.img'));
  writeFileSync(path, '');
  truncateSync(path, 8 * 1024 * 1024);
  const theirs = await attachLoop(path);
  cleanup(t, theirs);
  t.same(await loopsOf(id), [], 'nothing is backed by our (moved) inode');
  t.equal(await detachLoopOf(theirs, id), false, 'their device stays');
  t.ok((await listLoops()).some((l) => l.device === theirs));
  rmSync(join(dir, 'moved.img'));
});

t.test('a missing file is a typed error', async (t) => {
  await t.rejects(fileIdentity('/nonexistent/krt-loop.img'), { code: 'E_INVALID_ARGUMENT' });
  await t.rejects(attachLoop('/nonexistent/krt-loop.img'), { code: 'E_EXEC' });
});
