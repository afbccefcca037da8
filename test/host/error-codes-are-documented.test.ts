/**
 * The README's "Error codes" table and the catalogue (host/errors.ts) say the same, in both
 * directions (fastify's doc test): every code has exactly one row with its HTTP status and meaning,
 * every row names a code that exists, and every code is referred to by some source file (a code
 * nothing can produce is dead).
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, statusOf, type ErrorCode } from '../../host/errors.js';

// dist/test/host -> repository root
const root = join(import.meta.dirname, '..', '..', '..');

/** The rows of the table under "## Error codes": [code, status, meaning]. */
function readmeRows(): string[][] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Error codes\n');
  if (start < 0) return [];
  const section = readme.slice(start + 1).split(/\n## /)[0]!;
  return section
    .split('\n')
    .filter((l) => /^\|\s*`E_/.test(l))
    .map((l) =>
      l
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim()),
    );
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) {
      if (e !== 'generated') out.push(...sourceFiles(p));
    } else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

t.test('the README table has one row per catalogue code, with its status and meaning, and nothing else', async (t) => {
  const rows = readmeRows();
  t.ok(rows.length > 0, 'README.md has an "## Error codes" table');
  const documented = rows.map((r) => r[0]!.replace(/`/g, ''));
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];
  t.same([...documented].sort(), [...new Set(documented)].sort(), 'no code has two rows');
  for (const code of codes) t.ok(documented.includes(code), `${code} has a row in README.md`);
  for (const code of documented) t.ok(code in ERROR_CODES, `the README row ${code} names a code of the catalogue`);
  for (const [c, status, meaning] of rows) {
    const code = c!.replace(/`/g, '') as ErrorCode;
    if (!(code in ERROR_CODES)) continue;
    t.equal(Number(status), statusOf(code), `${code}: status ${status} is the catalogue's`);
    t.equal(meaning, ERROR_CODES[code], `${code}: the meaning is the catalogue's`);
  }
});

t.test(
  'every code is referred to by the source as a string (the catalogue tables name them unquoted; a code nothing produces is dead)',
  async (t) => {
    const text = ['host', 'plugins', 'virtiofsd-manager', 'devmapper', 'runtime-core', 'cni', 'guest', 'ttrpc', 'nbd', 'shim']
      .filter((d) => existsSync(join(root, d)))
      .flatMap((d) => sourceFiles(join(root, d)))
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    for (const code of Object.keys(ERROR_CODES)) t.ok(text.includes(`'${code}'`), `${code} is produced or handled somewhere`);
  },
);
