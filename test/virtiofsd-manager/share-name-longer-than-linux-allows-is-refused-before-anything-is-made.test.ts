/**
 * A share name the kernel cannot hold (a component over NAME_MAX, 255 bytes) is a typed
 * E_INVALID_NAME before anything is made, not an ENAMETOOLONG from mkdir (red-team D15:
 * `sandbox share --name <300 chars>`). Names at the limit still work.
 */
import t from 'tap';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SharedDir } from '../../virtiofsd-manager/shared-dir.js';
import { memLogger, tempRoot } from './helpers.js';

t.test('share --name of 300 bytes, or a 256-byte component, is refused; 255 bytes works', async (t) => {
  const root = tempRoot(t, 'longname');
  const sd = await SharedDir.prepare(join(root, 'kr'), 'sb1', memLogger().log);
  t.teardown(() => sd.teardown().catch(() => {}));
  const src = join(root, 'src');
  mkdirSync(src);
  for (const name of ['a'.repeat(300), `ok/${'b'.repeat(256)}`, `${'c/'.repeat(600)}d`]) {
    await t.rejects(
      sd.shareVolume({ containerId: 'sandbox', source: src, name, readonly: false }),
      { code: 'E_INVALID_NAME', message: /is too long: at most 255 bytes per component and 1024 in all/ },
      `${name.length} characters`,
    );
  }
  t.same(readdirSync(sd.mountsDir), [], 'nothing was made in mounts/');
  const ok = await sd.shareVolume({ containerId: 'sandbox', source: src, name: 'e'.repeat(255), readonly: true });
  t.equal(ok.name, 'e'.repeat(255));
  await sd.unshare(ok);
  t.same(readdirSync(sd.mountsDir), []);
});
