import t from 'tap';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { run } from '../../../host/exec.js';

// dist/test/shim/proto -> the package root
const root = join(import.meta.dirname, '..', '..', '..', '..');

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

t.test('regenerating from the committed .proto files gives the committed TypeScript, byte for byte', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'krt-gen-proto-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  for (const m of ['ttrpc', 'shim']) cpSync(join(root, m, 'proto'), join(tmp, m, 'proto'), { recursive: true });
  await run('bash', [join(root, 'scripts', 'gen-proto.sh'), tmp], { timeoutMs: 120_000 });
  for (const m of ['ttrpc', 'shim']) {
    const committed = join(root, m, 'generated');
    const fresh = join(tmp, m, 'generated');
    t.same(files(fresh), files(committed), `${m}/generated: the same files`);
    for (const f of files(committed)) {
      t.ok(readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f))), `${m}/generated/${f}: same bytes`);
    }
  }
});
