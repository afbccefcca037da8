/**
 * What a guest can leave in a read-write share (it writes the share's source through virtiofsd;
 * here the test writes the source directly, which is the same on the host): symlinks, absolute
 * and relative, at several depths, to a victim directory holding a tmpfs mount, an empty file and
 * an empty directory; a set-uid copy of id(1); a device node. Then every host-side operation on
 * shares runs (share, unshare of recorded and unrecorded names, teardown, teardown from the path
 * alone as after a crash) and the victim, its mount and the sources must be as they were, and an
 * unprivileged user made for the test must gain nothing through the sandbox's tree.
 * Reproductions: D1, D8, D13, D14, D20 and the nodev/nosuid part of D4 (redteam findings).
 */
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { run } from '../../host/exec.js';
import { mountsUnder, readMountinfo } from '../../host/mounts.js';
import { SharedDir } from '../../virtiofsd-manager/shared-dir.js';
import { unprivilegedUser } from '../helpers/unprivileged-user.js';
import { makeVictim, victimIntact } from '../helpers/victim.js';
import { memLogger, tempRoot } from './helpers.js';

/** Plant links like a guest would: absolute and relative, at depths 0-2 of the share. */
function plantLinks(src: string, target: string): string[] {
  const names: string[] = [];
  for (const dir of ['', 'a', 'a/b']) {
    mkdirSync(join(src, dir), { recursive: true });
    const depth = dir === '' ? 0 : dir.split('/').length;
    symlinkSync(target, join(src, dir, 'evil'));
    // Enough ".." to reach "/" from the host path of the share and from the guest's view alike.
    symlinkSync(`${'../'.repeat(depth + 12)}${target.slice(1)}`, join(src, dir, 'evilrel'));
    names.push(join(dir, 'evil'), join(dir, 'evilrel'));
  }
  return names;
}

async function setup(t: Test) {
  const root = tempRoot(t, 'gshare');
  const v = await makeVictim(t, 'm');
  const { log, lines } = memLogger();
  const sd = await SharedDir.prepare(join(root, 'kr'), 'sb1', log);
  t.teardown(() => sd.teardown().catch(() => {}));
  const src = join(root, 'rw');
  mkdirSync(src);
  return { root, v, sd, src, lines };
}

t.test('D1/D13: unshare only acts on recorded shares, whatever symlinks the guest planted', async (t) => {
  const { v, sd, src } = await setup(t);
  const vol = await sd.shareVolume({ containerId: 'sandbox', source: src, name: 'vol', readonly: false });
  const links = plantLinks(src, v.dir);
  const mountsBefore = mountsUnder(sd.sandboxDir).length;
  for (const l of links) {
    for (const tail of ['', '/m', '/sub', '/sub/lock']) {
      await t.rejects(
        sd.unshare(`vol/${l}${tail}`),
        { code: 'E_INVALID_ARGUMENT', message: /has no share named .*its shares: vol.*nothing was changed/ },
        `unshare vol/${l}${tail}`,
      );
    }
  }
  await t.rejects(sd.unshare('nosuch'), { code: 'E_INVALID_ARGUMENT', message: /no share named nosuch/ }, 'D13: a name never shared');
  t.equal(mountsUnder(sd.sandboxDir).length, mountsBefore, 'no mount of the sandbox went');
  victimIntact(t, v, 'after the refused unshares');
  await sd.unshare(vol);
  t.same(readdirSync(sd.mountsDir), [], 'the recorded share is unshared: its mount point is gone');
  t.ok(lstatSync(join(src, 'a/b/evilrel')).isSymbolicLink(), "the guest's own files stay in its source");
  victimIntact(t, v, 'after unsharing vol');
});

t.test('D14/D20: a name inside a share is refused before anything is made, in the source or through a link', async (t) => {
  const { v, sd, src, root } = await setup(t);
  await sd.shareVolume({ containerId: 'sandbox', source: src, name: 'vol', readonly: false });
  plantLinks(src, v.dir);
  const other = join(root, 'other');
  mkdirSync(other);
  for (const name of ['vol/evilrel/newdir/x', 'vol/a/evil/newdir', 'vol/a/inner', 'vol/x']) {
    await t.rejects(
      sd.shareVolume({ containerId: 'sandbox', source: other, name, readonly: false }),
      { code: 'E_PATH_UNSAFE', message: /lies inside the share vol.*choose a name outside other shares/ },
      `share --name ${name}`,
    );
  }
  t.notOk(existsSync(join(src, 'inner')), 'D20: no mount point made in the user source');
  t.notOk(existsSync(join(src, 'x')), 'nor any other');
  t.same(readdirSync(src).sort(), ['a', 'evil', 'evilrel'], 'the source holds only what the guest put there');
  victimIntact(t, v, 'after the refused shares');
  // Nested below our own directories is fine, read-write and read-only, and leaves nothing when undone.
  const n1 = await sd.shareVolume({ containerId: 'sandbox', source: other, name: 'deep/a/rw', readonly: false });
  const n2 = await sd.shareVolume({ containerId: 'sandbox', source: other, name: 'deep/a/ro', readonly: true });
  t.ok(n1.mountId && n2.mountId && n1.mountId !== n2.mountId, 'each share records its mount id');
  await sd.unshare(n1);
  await sd.unshare(n2);
  t.same(readdirSync(sd.mountsDir), ['vol'], 'the nested mount points and their parents are gone');
});

t.test('D8: a source through a guest-planted link below a read-write share is refused, symlinks allowed or not', async (t) => {
  const { v, sd, src } = await setup(t);
  await sd.shareVolume({ containerId: 'sandbox', source: src, name: 'w2', readonly: false });
  const links = plantLinks(src, v.dir);
  for (const l of links) {
    for (const allowSymlinks of [false, true]) {
      await t.rejects(
        sd.shareVolume({ containerId: 'sandbox', source: join(src, l), name: 'sub', readonly: false, allowSymlinks }),
        { code: 'E_PATH_UNSAFE', message: allowSymlinks ? /which a guest can write/ : /is a symlink/ },
        `share --source ${l}${allowSymlinks ? ' (symlinks allowed)' : ''}`,
      );
    }
  }
  t.same(
    sd.shares().map((s) => s.name),
    ['w2'],
    'nothing shared',
  );
  t.notOk(existsSync(join(sd.mountsDir, 'sub')), 'no mount point left');
  victimIntact(t, v, 'after the refused sources');
});

t.test('teardown and crash recovery with planted links, set-uid files and devices: host untouched, a user gains nothing', async (t) => {
  const { v, sd, src, root } = await setup(t);
  const ro = join(root, 'ro');
  mkdirSync(ro);
  const vol = await sd.shareVolume({ containerId: 'sandbox', source: src, name: 'vol', readonly: false });
  await sd.shareVolume({ containerId: 'sandbox', source: ro, name: 'ro', readonly: true });
  await sd.shareVolume({ containerId: 'sandbox', source: src, name: 'deep/x/nested', readonly: false });
  plantLinks(src, v.dir);
  copyFileSync('/usr/bin/id', join(src, 'suid-id'));
  chmodSync(join(src, 'suid-id'), 0o4755);
  await run('mknod', ['-m', '0666', join(src, 'null-node'), 'c', '1', '3']);

  const user = await unprivilegedUser(t, 'vfs');
  const viaExport = join(sd.sharedDir, vol.name);
  const reach = await user.run(['ls', viaExport]);
  t.not(reach.exitCode, 0, `the user cannot even enter the sandbox tree (0700): ${reach.stderr.trim()}`);
  // Root can: check the mount flags that hold when the tree is reachable (virtiofsd runs as root).
  const m = readMountinfo().find((x) => x.mountPoint === viaExport);
  t.ok(m?.options.includes('nosuid') && m.options.includes('nodev'), `the export's copy is nosuid,nodev: ${m?.options.join(',')}`);
  const dev = await run('sh', ['-c', `echo x > ${join(viaExport, 'null-node')}`], { reject: false });
  t.not(dev.exitCode, 0, `a device node in the share cannot be opened through the export: ${dev.stderr.trim()}`);
  const suid = await user.run([join(sd.mountsDir, 'vol/suid-id'), '-u']);
  t.not(suid.exitCode, 0, `the user cannot reach the set-uid file through the sandbox tree: ${suid.stderr.trim()}`);
  // Were the tree open to the user, nosuid would still hold: setpriv's own exec looks the path up as root.
  const viaSetpriv = await run(
    'setpriv',
    [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--', join(sd.mountsDir, 'vol/suid-id'), '-u'],
    { reject: false },
  );
  t.equal(
    viaSetpriv.stdout.trim(),
    String(user.uid),
    `nosuid: the set-uid bit gives no euid 0 through the share mount ${viaSetpriv.stderr.trim()}`,
  );

  await sd.teardown();
  victimIntact(t, v, 'after teardown');
  t.same(mountsUnder(sd.sandboxDir), [], 'no mount of the sandbox left');
  t.notOk(existsSync(sd.sandboxDir), 'the sandbox tree is gone');
  t.ok(existsSync(join(src, 'suid-id')) && existsSync(join(src, 'a/b/evil')), "the guest's files stay in the user's source (its data)");
  t.notOk(existsSync(join(src, 'deep')), 'no mount point of the nested share in the source (D20)');

  // The same after a crash: a second tree rebuilt, then cleaned from its path alone.
  const { log } = memLogger();
  const sd2 = await SharedDir.prepare(join(root, 'kr'), 'sb2', log);
  await sd2.shareVolume({ containerId: 'sandbox', source: src, name: 'vol', readonly: false });
  await sd2.shareVolume({ containerId: 'sandbox', source: ro, name: 'nested/ro', readonly: true });
  await SharedDir.teardownAt(sd2.sandboxDir, log);
  victimIntact(t, v, 'after crash recovery');
  t.notOk(existsSync(sd2.sandboxDir), 'recovered tree gone');
});

t.test('D4: a read-write share of a directory other users can reach is refused (or allowed with a warning by policy)', async (t) => {
  const { sd, lines } = await setup(t);
  const open = mkdtempSync('/tmp/krt-reach-');
  t.teardown(() => run('rm', ['-rf', open]));
  await t.rejects(
    sd.shareVolume({ containerId: 'sandbox', source: open, name: 'open', readonly: false }),
    {
      code: 'E_PATH_UNSAFE',
      message: /can be reached by other host users .*\/tmp \(1777 0:0\).*setuid.*chmod 0700 a parent.*rwShareReachable/,
    },
    'refused, naming the open directories and the fixes',
  );
  t.notOk(existsSync(join(sd.mountsDir, 'open')), 'nothing made');
  const ro = await sd.shareVolume({ containerId: 'sandbox', source: open, name: 'open-ro', readonly: true });
  t.ok(ro, 'read-only is fine: the guest cannot write it');
  const rw = await sd.shareVolume({ containerId: 'sandbox', source: open, name: 'open', readonly: false }, { rwShareReachable: 'allow' });
  t.ok(rw, 'allowed by policy');
  t.ok(
    lines.some((l) => l.level === 40 && /can be reached by other host users/.test(String(l.msg))),
    'with a warning',
  );
});
