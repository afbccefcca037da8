/**
 * host/safe-path.ts on a real file system: symlinks (absolute and relative, at depths 1 to 3) in
 * a tree standing for a guest-writable share are refused by every operation, the refusal names
 * the link, and nothing outside the tree is created, removed or opened; the same walks without
 * symlinks do their job; reachableByOthers reads the directories above a path.
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  mkdirsBeneath,
  openBeneath,
  openExact,
  reachableByOthers,
  removeEmptyBeneath,
  resolveStrict,
  walkBeneath,
} from '../../host/safe-path.js';

function tree(t: { teardown(fn: () => unknown): void }): { base: string; share: string; victim: string } {
  const base = mkdtempSync('/tmp/krt-safepath-');
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const share = join(base, 'share');
  const victim = join(base, 'victim');
  mkdirSync(join(share, 'a/b'), { recursive: true });
  mkdirSync(join(victim, 'sub/empty'), { recursive: true });
  writeFileSync(join(victim, 'sub/lock'), '');
  return { base, share, victim };
}

/** The symlinks a guest could plant: absolute and relative, one to three components deep. */
function plant(share: string, victim: string): string[] {
  const names: string[] = [];
  for (const dir of ['', 'a', 'a/b']) {
    const depth = dir === '' ? 0 : dir.split('/').length;
    const abs = join(dir, 'abs');
    const rel = join(dir, 'rel');
    symlinkSync(victim, join(share, abs));
    symlinkSync(`${'../'.repeat(depth + 1)}victim`, join(share, rel));
    names.push(abs, rel);
  }
  return names;
}

function victimUntouched(t: Test, victim: string): void {
  t.same(readdirSync(victim).sort(), ['sub'], 'victim: nothing created or removed at its top');
  t.same(readdirSync(join(victim, 'sub')).sort(), ['empty', 'lock'], 'victim/sub: the empty file and directory are still there');
  t.same(readdirSync(join(victim, 'sub/empty')), [], 'victim/sub/empty: still empty');
}

t.test('every symlink depth and kind: walk, open, mkdir and remove refuse it and leave the target alone', async (t) => {
  const { share, victim } = tree(t);
  const links = plant(share, victim);
  t.equal(links.length, 6);
  for (const l of links) {
    t.throws(
      () => walkBeneath(share, `${l}/sub`),
      { code: 'E_PATH_UNSAFE', message: new RegExp(`${l} is a symlink`) },
      `walk through ${l}`,
    );
    t.throws(() => walkBeneath(share, l), { code: 'E_PATH_UNSAFE' }, `walk to ${l} itself`);
    t.throws(() => openBeneath(share, `${l}/sub`), { code: 'E_PATH_UNSAFE' }, `open through ${l}`);
    t.throws(() => mkdirsBeneath(share, `${l}/newdir/x`), { code: 'E_PATH_UNSAFE' }, `mkdir through ${l}`);
    t.throws(() => removeEmptyBeneath(share, `${l}/sub/lock`), { code: 'E_PATH_UNSAFE' }, `remove the empty file through ${l}`);
    t.throws(() => removeEmptyBeneath(share, `${l}/sub/empty`), { code: 'E_PATH_UNSAFE' }, `remove the empty dir through ${l}`);
    t.throws(
      () => resolveStrict(join(share, l, 'sub'), { allowSymlinks: true, noFollowBelow: [share] }),
      { code: 'E_PATH_UNSAFE', message: /which a guest can write/ },
      `resolve through ${l} below a guest-writable root, even with symlinks allowed`,
    );
    t.throws(
      () => resolveStrict(join(share, l)),
      { code: 'E_PATH_UNSAFE', message: /give the resolved path/ },
      `resolve ${l}, symlinks off`,
    );
  }
  victimUntouched(t, victim);
});

t.test('without symlinks the same operations do their job, creating and removing only what they name', async (t) => {
  const { base, share, victim } = tree(t);
  const made = mkdirsBeneath(share, 'a/b/c/d');
  t.same(made, [join(share, 'a/b/c'), join(share, 'a/b/c/d')], 'only the missing components, in order');
  t.equal(walkBeneath(share, 'a/b/c/d')?.st.isDirectory(), true);
  t.equal(walkBeneath(share, 'a/missing/x'), undefined, 'a missing component: undefined');
  const o = openBeneath(share, 'a/b/c');
  t.ok(o, 'opened');
  t.equal(o!.path, join(share, 'a/b/c'));
  t.match(o!.procPath, /^\/proc\/\d+\/fd\/\d+$/);
  closeSync(o!.fd);
  t.equal(removeEmptyBeneath(share, 'a/b/c'), 'kept', 'a non-empty directory is kept');
  t.equal(removeEmptyBeneath(share, 'a/b/c/d'), 'removed');
  t.equal(removeEmptyBeneath(share, 'a/b/c/d'), 'absent', 'twice: absent');
  writeFileSync(join(share, 'a/data'), 'not empty');
  t.equal(removeEmptyBeneath(share, 'a/data'), 'kept', 'a file with content is kept');
  t.throws(() => mkdirsBeneath(share, 'a/data/x'), { code: 'E_PATH_UNSAFE', message: /not a directory/ });
  for (const bad of ['../x', '/abs', 'a/./b', 'a//b', ''])
    t.throws(() => walkBeneath(share, bad), { code: 'E_PATH_UNSAFE' }, `name ${JSON.stringify(bad)}`);
  t.equal(resolveStrict(join(share, 'a/b/../b')), join(share, 'a/b'), '".." is resolved lexically once the walk is at a real directory');
  symlinkSync(join(base, 'victim'), join(base, 'outside-link'));
  t.equal(
    resolveStrict(join(base, 'outside-link/sub'), { allowSymlinks: true, noFollowBelow: [share] }),
    join(victim, 'sub'),
    'allowed outside the guarded roots',
  );
  victimUntouched(t, victim);
});

t.test('openExact notices a component swapped for a symlink after the walk', async (t) => {
  const { share, victim } = tree(t);
  const w = walkBeneath(share, 'a/b');
  t.ok(w);
  renameSync(join(share, 'a'), join(share, 'a.old'));
  symlinkSync(victim, join(share, 'a'));
  mkdirSync(join(victim, 'b'));
  t.throws(() => openExact(w!.path, w!.st), { code: 'E_PATH_UNSAFE', message: /changed while it was checked|replaced/ }, 'refused');
  t.throws(
    () => openExact(join(share, 'a')),
    { code: 'E_PATH_UNSAFE', message: /symlink/ },
    'the symlink itself is never opened as its target',
  );
});

t.test('reachableByOthers: open when every directory above lets others search, closed by one 0700 parent', async (t) => {
  const { base, share } = tree(t);
  chmodSync(base, 0o700);
  t.equal(reachableByOthers(join(share, 'a')), undefined, 'a 0700 root-owned directory above closes it');
  chmodSync(base, 0o711);
  t.match(reachableByOthers(join(share, 'a')) ?? '', /can be searched by other users: .*\/share \(0755 0:0\)/, 'all open: says which');
  chmodSync(share, 0o700);
  t.equal(reachableByOthers(join(share, 'a')), undefined, 'closed again by the share root');
  t.match(
    reachableByOthers(share) ?? '',
    /krt-safepath-/,
    "only the directories strictly above count (the share root itself is the guest's)",
  );
  t.notOk(existsSync(join(base, 'victim/newdir')), 'nothing made in the victim');
});
