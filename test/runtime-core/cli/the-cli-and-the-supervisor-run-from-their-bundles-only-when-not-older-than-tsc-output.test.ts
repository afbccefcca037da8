import t from 'tap';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshBundle, runBundle } from '../../../runtime-core/cli/bundle-entry.js';

function dir(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'krt-bundle-entry-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test('the bundle when it is at least as new as the tsc output; KATA_RESOURCES_BUNDLES=off never', async (t) => {
  const d = dir(t);
  const main = join(d, 'main.js');
  const bundle = join(d, 'main.cjs');
  writeFileSync(main, '');
  t.equal(freshBundle(d, 'main', {}), undefined, 'no bundle: the ES module');
  writeFileSync(bundle, '');
  utimesSync(main, 1000, 1000);
  utimesSync(bundle, 2000, 2000);
  t.equal(freshBundle(d, 'main', {}), bundle, 'a bundle built after tsc: the bundle');
  t.equal(freshBundle(d, 'main', { KATA_RESOURCES_BUNDLES: 'off' }), undefined, 'KATA_RESOURCES_BUNDLES=off: the ES module');
  utimesSync(main, 3000, 3000);
  t.equal(freshBundle(d, 'main', {}), undefined, 'tsc ran after the bundle: the ES module (the bundle is stale)');
});

t.test('a bundle runs its top level as CommonJS', async (t) => {
  const d = dir(t);
  const bundle = join(d, 'b.cjs');
  const g = globalThis as { krtBundleRan?: unknown };
  writeFileSync(bundle, 'globalThis.krtBundleRan = [__filename, typeof require("node:path").join];');
  runBundle(bundle);
  t.same(g.krtBundleRan, [bundle, 'function']);
  delete g.krtBundleRan;
});
