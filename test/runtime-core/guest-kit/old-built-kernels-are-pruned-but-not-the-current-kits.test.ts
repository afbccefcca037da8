import t from 'tap';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pruneGuestKits } from '../../../runtime-core/guest-kit/kit-cache.js';

t.test('kernel-<hash> dirs beyond the newest ones go; the current kit keeps its kernel however old', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-gk-prune-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kernel = async (hash: string, ageS: number): Promise<void> => {
    await mkdir(join(dir, `kernel-${hash}`));
    const f = join(dir, `kernel-${hash}`, 'kernel.json');
    await writeFile(f, '{}');
    const when = new Date(Date.now() - ageS * 1000);
    await utimes(f, when, when);
  };
  const hashes = ['a', 'b', 'c', 'd', 'e'].map((c) => c.repeat(16));
  for (const [i, h] of hashes.entries()) await kernel(h, (i + 1) * 100); // a newest, e oldest
  const current = '1'.repeat(20);
  await mkdir(join(dir, current));
  await writeFile(join(dir, current, 'kit.json'), JSON.stringify({ inputs: { kernel: { build: hashes[4] } } }));

  const removed = await pruneGuestKits(dir, current, 3);
  t.same(removed.sort(), [`kernel-${hashes[2]}`, `kernel-${hashes[3]}`], 'the two oldest not in use go');
  t.same(
    (await readdir(dir)).filter((n) => n.startsWith('kernel-')).sort(),
    [`kernel-${hashes[0]}`, `kernel-${hashes[1]}`, `kernel-${hashes[4]}`],
    "the two newest and the current kit's kernel stay",
  );
  t.same(await pruneGuestKits(dir, current, 3), [], 'a second prune removes nothing');
});
