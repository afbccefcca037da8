import t from 'tap';
import { lstat, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { cpioNewc } from '../../../runtime-core/guest-kit/cpio.js';
import { INIT_SCRIPT } from '../../../runtime-core/guest-kit/initramfs.js';

t.test('an archive with a dir, files, a symlink and /dev/console unpacks as written', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-cpio-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const odd = Buffer.from([1, 2, 3]); // a size that needs padding
  const archive = cpioNewc([
    { type: 'dir', path: 'bin' },
    { type: 'dir', path: 'dev' },
    { type: 'file', path: 'bin/tool', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
    { type: 'file', path: 'data', data: odd },
    { type: 'symlink', path: 'bin/sh', target: 'tool' },
    { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
  ]);
  t.equal(archive.length % 4, 0, 'newc records are 4-byte aligned');
  const file = join(dir, 'a.cpio');
  await writeFile(file, archive);
  const list = (await run('cpio', ['-itv', '-F', file])).stdout;
  t.match(list, /^crw-------.* 5,\s+1 .*dev\/console$/m, 'character device 5,1');
  t.match(list, /^lrwxrwxrwx.*bin\/sh -> tool$/m);
  t.match(list, /^-rwxr-xr-x.*bin\/tool$/m);

  const out = join(dir, 'x');
  await run('cpio', ['-idm', '-F', file, '-D', out], { reject: true });
  t.equal(await readFile(join(out, 'bin/tool'), 'utf8'), '#!/bin/sh\necho hi\n');
  t.same(await readFile(join(out, 'data')), odd);
  t.equal(await readlink(join(out, 'bin/sh')), 'tool');
  t.ok((await lstat(join(out, 'dev/console'))).isCharacterDevice());
});

t.test('bad paths are refused; the output is reproducible', async (t) => {
  t.throws(() => cpioNewc([{ type: 'dir', path: '../etc' }]));
  t.throws(() => cpioNewc([{ type: 'dir', path: '/' }]));
  const a = cpioNewc([{ type: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT) }]);
  const b = cpioNewc([{ type: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT) }]);
  t.ok(a.equals(b));
});
