import t from 'tap';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { supervisorEntry } from '../../../runtime-core/cli/supervisor-entry.js';

t.test('the bundle when it is at least as new as main.js, else main.js; esm forces main.js', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-sup-entry-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const main = join(dir, 'main.js');
  const bundle = join(dir, 'supervisor.cjs');
  writeFileSync(main, '');
  t.equal(supervisorEntry(dir, {}), main, 'no bundle: main.js');
  writeFileSync(bundle, '');
  utimesSync(main, 1000, 1000);
  utimesSync(bundle, 2000, 2000);
  t.equal(supervisorEntry(dir, {}), bundle, 'a bundle built after tsc: the bundle');
  t.equal(supervisorEntry(dir, { KATA_RESOURCES_SUPERVISOR: 'esm' }), main, 'KATA_RESOURCES_SUPERVISOR=esm: main.js');
  utimesSync(main, 3000, 3000);
  t.equal(supervisorEntry(dir, {}), main, 'tsc ran after the bundle: main.js (the bundle is stale)');
});
