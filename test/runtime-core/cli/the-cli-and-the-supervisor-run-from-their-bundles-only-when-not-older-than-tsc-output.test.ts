import t from 'tap';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshBundle, supervisorEntry } from '../../../runtime-core/cli/bundle-entry.js';

t.test('the bundle when it is at least as new as the tsc output, else the ES module; BUNDLES=off forces it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-bundle-entry-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const main = join(dir, 'main.js');
  const bundle = join(dir, 'main.cjs');
  writeFileSync(main, '');
  t.equal(supervisorEntry(dir, {}), main, 'no bundle: main.js');
  writeFileSync(bundle, '');
  utimesSync(main, 1000, 1000);
  utimesSync(bundle, 2000, 2000);
  t.equal(supervisorEntry(dir, {}), bundle, 'a bundle built after tsc: the bundle');
  t.equal(freshBundle(dir, 'main', {}), bundle);
  t.equal(supervisorEntry(dir, { KATA_RESOURCES_BUNDLES: 'off' }), main, 'KATA_RESOURCES_BUNDLES=off: main.js');
  utimesSync(main, 3000, 3000);
  t.equal(supervisorEntry(dir, {}), main, 'tsc ran after the bundle: main.js (the bundle is stale)');
  t.equal(freshBundle(dir, 'cli', {}), undefined, 'no bundle of that name: none');
});
