import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { mountsUnder } from '../../host/mounts.js';
import { SharedDir } from '../../virtiofsd-manager/shared-dir.js';
import { memLogger, tempRoot } from './helpers.js';

t.test('unsafe sources, container ids and destinations are refused with E_PATH_UNSAFE and leave nothing', async (t) => {
  const root = tempRoot(t);
  mkdirSync(`${root}/allowed/vol`, { recursive: true });
  mkdirSync(`${root}/secret`);
  writeFileSync(`${root}/secret/key`, 'top secret');
  symlinkSync(`${root}/secret`, `${root}/allowed/escape`);
  symlinkSync(`${root}/allowed/vol`, `${root}/allowed/inside`);
  const sd = await SharedDir.prepare(`${root}/kr`, 'sb1', memLogger().log);
  t.teardown(() => sd.teardown());
  const mountsBefore = mountsUnder(root).length;
  const allowedRoots = [`${root}/allowed`];

  await t.rejects(
    sd.shareVolume({ containerId: 'c1', source: `${root}/allowed/escape`, destination: '/x', readonly: true, allowedRoots }),
    { code: 'E_PATH_UNSAFE', message: /allowed\/escape is a symlink \(to .*\/secret\).*give the resolved path/ },
    'a symlink in the source is refused by default, naming it and its target',
  );
  await t.rejects(
    sd.shareVolume({
      containerId: 'c1',
      source: `${root}/allowed/escape`,
      destination: '/x',
      readonly: true,
      allowedRoots,
      allowSymlinks: true,
    }),
    { code: 'E_PATH_UNSAFE', message: /resolves to .*\/secret, outside the allowed directories/ },
    'when symlinks are allowed, one escaping the allowed root is still refused',
  );
  await t.rejects(
    sd.shareVolume({ containerId: 'c1', source: `${root}/secret`, destination: '/x', readonly: false }, { volumeRoots: allowedRoots }),
    { code: 'E_PATH_UNSAFE' },
    'manager-wide roots apply when the request has none',
  );
  const inside = await sd.shareVolume({
    containerId: 'c1',
    source: `${root}/allowed/inside`,
    destination: '/ok',
    readonly: true,
    allowedRoots,
    allowSymlinks: true,
  });
  t.equal(inside.source, `${root}/allowed/vol`, 'an allowed symlink that stays inside is fine (and recorded resolved)');
  await sd.unshare(inside);

  for (const cid of ['../evil', 'a/../../b', 'a/b']) {
    await t.rejects(sd.shareRootfs(cid, `${root}/allowed/vol`), { code: 'E_PATH_UNSAFE', message: /container id/ }, `container id ${cid}`);
  }
  await t.rejects(sd.shareRootfs('-bad id', `${root}/allowed/vol`), { code: 'E_INVALID_NAME' }, 'other bad ids are invalid names');

  for (const name of ['../outside', '/abs/path', 'a/../../x', './x', 'a//b', '']) {
    await t.rejects(
      sd.shareVolume({ containerId: 'c1', source: `${root}/allowed/vol`, name, readonly: false }),
      { code: 'E_PATH_UNSAFE' },
      `destination ${JSON.stringify(name)}`,
    );
  }
  // A symlink planted inside mounts/ that points out of it.
  mkdirSync(`${root}/elsewhere`);
  symlinkSync(`${root}/elsewhere`, `${sd.mountsDir}/trap`);
  await t.rejects(
    sd.shareVolume({ containerId: 'c1', source: `${root}/allowed/vol`, name: 'trap/x', readonly: false }),
    { code: 'E_PATH_UNSAFE', message: /trap is a symlink/ },
    'destination through a symlink in mounts',
  );
  await t.rejects(
    sd.shareVolume({ containerId: 'c1', source: `${root}/allowed/vol`, name: 'trap', readonly: false }),
    { code: 'E_PATH_UNSAFE', message: /symlink/ },
    'destination that is a symlink',
  );

  await t.rejects(sd.shareVolume({ containerId: 'c1', source: '/dev/null', destination: '/n', readonly: false }), {
    code: 'E_INVALID_ARGUMENT',
    message: /neither a directory nor a regular file/,
  });
  await t.rejects(sd.shareVolume({ containerId: 'c1', source: `${root}/missing`, destination: '/n', readonly: false }), {
    code: 'E_INVALID_ARGUMENT',
  });

  t.equal(mountsUnder(root).length, mountsBefore, 'no mount made by a refused share');
  t.same(readdirSync(`${root}/elsewhere`), [], 'nothing created through the planted symlink');
  t.same(readdirSync(sd.mountsDir), ['trap'], 'only the planted symlink in mounts');
  t.ok(existsSync(`${root}/secret/key`));
});
