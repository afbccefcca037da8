import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { bindMount, mountsUnder, readMountinfo, remountReadonly, unmount } from '../../host/mounts.js';
import { SharedDir } from '../../virtiofsd-manager/shared-dir.js';
import { memLogger, tempRoot } from './helpers.js';

function writeFails(path: string): string | undefined {
  try {
    writeFileSync(path, 'x');
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code;
  }
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const root = tempRoot(t);
  const vol = `${root}/vol`;
  mkdirSync(vol);
  writeFileSync(`${vol}/hello`, 'from host');
  const { log, lines } = memLogger();
  const sd = await SharedDir.prepare(`${root}/kr`, 'sb1', log);
  t.teardown(() => sd.teardown());
  return { root, vol, sd, lines };
}

t.test('layout: mounts is rw and shared, shared is a read-only slave of it, sandbox dir private', async (t) => {
  const { root, sd } = await setup(t);
  const table = readMountinfo();
  const at = (p: string) => table.filter((m) => m.mountPoint === p).at(-1)!;
  t.equal(sd.sandboxDir, `${root}/kr/sandboxes/sb1`);
  t.ok(at(sd.sandboxDir).propagation.length === 0, 'sandbox dir: private');
  t.match(at(sd.mountsDir).propagation.join(' '), /shared:\d+/);
  t.ok(at(sd.mountsDir).options.includes('rw'));
  const peer = /shared:(\d+)/.exec(at(sd.mountsDir).propagation.join(' '))![1];
  t.same(at(sd.sharedDir).propagation, [`master:${peer}`], 'shared: slave of mounts');
  t.ok(at(sd.sharedDir).options.includes('ro'));
  t.equal(writeFails(`${sd.sharedDir}/top`), 'EROFS', 'the export itself is read-only');
});

t.test('a read-only volume is read-only inside shared (EROFS) while a rw volume and the rootfs are writable', async (t) => {
  const { vol, sd } = await setup(t);
  const ro = await sd.shareVolume({ containerId: 'c1', source: vol, destination: '/etc/config', readonly: true });
  const rw = await sd.shareVolume({ containerId: 'c1', source: vol, destination: '/data', readonly: false });
  const rootfs = await sd.shareRootfs('c1', vol);
  t.match(ro.name, /^c1-[0-9a-f]{16}-config$/);
  t.equal(ro.guestPath, `/run/kata-containers/shared/containers/${ro.name}`);
  t.equal(rootfs.name, 'c1/rootfs');
  t.equal(readFileSync(`${sd.sharedDir}/${ro.name}/hello`, 'utf8'), 'from host', 'ro volume readable through the export');
  t.equal(writeFails(`${sd.sharedDir}/${ro.name}/new`), 'EROFS', 'ro volume not writable through the export');
  t.equal(writeFails(`${sd.mountsDir}/${ro.name}/new`), 'EROFS', 'nor through mounts');
  t.equal(writeFails(`${sd.sharedDir}/${rw.name}/from-rw`), undefined, 'rw volume writable through the export');
  t.equal(writeFails(`${sd.sharedDir}/c1/rootfs/from-rootfs`), undefined, 'rootfs writable through the export');
  t.ok(existsSync(`${vol}/from-rw`) && existsSync(`${vol}/from-rootfs`), 'writes reach the host source');
  t.same(readdirSync(sd.privateDir), [], 'private scratch emptied');
  t.same(
    sd.shares().map((s) => s.name),
    [ro.name, rw.name, 'c1/rootfs'],
  );
});

t.test('a single-file read-only volume is read-only inside shared too', async (t) => {
  const { vol, sd } = await setup(t);
  const f = await sd.shareVolume({ containerId: 'c2', source: `${vol}/hello`, destination: '/etc/hostname', readonly: true });
  t.equal(readFileSync(`${sd.sharedDir}/${f.name}`, 'utf8'), 'from host');
  t.equal(writeFails(`${sd.sharedDir}/${f.name}`), 'EROFS');
});

t.test(
  'control: a naive rw bind + ro remount in mounts would leave the copy in shared writable (what the private step prevents)',
  async (t) => {
    const { vol, sd } = await setup(t);
    const target = `${sd.mountsDir}/naive`;
    mkdirSync(target);
    await bindMount(vol, target);
    await remountReadonly(target);
    t.teardown(async () => {
      await unmount(target);
      await unmount(`${sd.sharedDir}/naive`);
    });
    t.equal(writeFails(`${target}/x`), 'EROFS', 'ro in mounts');
    t.equal(writeFails(`${sd.sharedDir}/naive/x`), undefined, 'but still writable in shared: CVE-2020-28914');
  },
);

t.test('unshare is the exact inverse: same mount table, mount points removed', async (t) => {
  const { vol, sd } = await setup(t);
  const before = mountsUnder(sd.sandboxDir)
    .map((m) => `${m.mountPoint} ${m.options.join(',')}`)
    .sort();
  const ro = await sd.shareVolume({ containerId: 'c1', source: vol, destination: '/a', readonly: true });
  await sd.shareVolume({ containerId: 'c1', source: `${vol}/hello`, destination: '/b', readonly: false });
  await sd.shareRootfs('c1', vol);
  const c2 = await sd.shareVolume({ containerId: 'c2', source: vol, name: 'c2-vol', readonly: false });
  t.equal(mountsUnder(sd.sandboxDir).length, before.length + 8, 'each share: one mount in mounts, one copy in shared');
  await sd.unshare(ro);
  t.notOk(existsSync(ro.hostPath));
  await sd.unshareContainer('c1');
  t.notOk(existsSync(`${sd.mountsDir}/c1`), 'rootfs dir and its <cid> parent removed');
  await sd.unshare(c2);
  t.same(
    mountsUnder(sd.sandboxDir)
      .map((m) => `${m.mountPoint} ${m.options.join(',')}`)
      .sort(),
    before,
  );
  t.same(readdirSync(sd.mountsDir), []);
  t.same(sd.shares(), []);
  t.ok(existsSync(`${vol}/hello`), 'sources untouched');
  await t.rejects(
    sd.unshare(c2),
    { code: 'E_INVALID_ARGUMENT', message: /has no share named c2-vol.*nothing was changed/ },
    'a second unshare is refused: the share is no longer recorded',
  );
});

t.test('teardown unmounts everything (busy mounts lazily) and removes the sandbox dirs, twice is harmless', async (t) => {
  const { root, vol, sd, lines } = await setup(t);
  await sd.shareVolume({ containerId: 'c1', source: vol, destination: '/a', readonly: true });
  await sd.shareRootfs('c1', vol);
  const s = await sd.shareVolume({ containerId: 'c1', source: vol, destination: '/busy', readonly: false });
  // Keep a directory fd open inside a share: a plain umount would say EBUSY for the cwd of a process.
  const { spawn } = await import('node:child_process');
  const holder = spawn('sleep', ['30'], { cwd: `${sd.sharedDir}/${s.name}`, stdio: 'ignore' });
  t.teardown(() => {
    holder.kill('SIGKILL');
  });
  await sd.teardown();
  t.notOk(
    lines.some((l) => l.msg === 'unmount failed; will retry'),
    'the busy mount was detached at once (umount -l of the checked mount)',
  );
  t.same(mountsUnder(root), [], 'no mount left');
  t.notOk(existsSync(sd.sandboxDir));
  t.ok(existsSync(`${root}/kr/sandboxes`), 'the shared root stays');
  t.equal(readFileSync(`${vol}/hello`, 'utf8'), 'from host', 'volume content untouched');
  await sd.teardown();
});

t.test('preparing a sandbox whose dir is still mounted is refused; an unmounted leftover is replaced', async (t) => {
  const { root, sd } = await setup(t);
  await t.rejects(SharedDir.prepare(`${root}/kr`, 'sb1', memLogger().log), { code: 'E_SANDBOX_EXISTS' });
  await sd.teardown();
  mkdirSync(`${sd.mountsDir}/c9/rootfs`, { recursive: true });
  const again = await SharedDir.prepare(`${root}/kr`, 'sb1', memLogger().log);
  t.same(readdirSync(again.mountsDir), [], 'leftover mount points gone');
  await again.teardown();
});
