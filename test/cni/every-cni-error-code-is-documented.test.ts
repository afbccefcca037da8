import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CNI_CODES, cniCodeForKataCode, OWN_CODES, toErrorResult } from '../../cni/errors.js';
import { ERROR_CODES, KataError, type ErrorCode } from '../../host/errors.js';
import { REPO } from './helpers/cni-runtime.js';

/**
 * The kata-cni error table of the README (header "| CNI code | name | meaning |") lists exactly the codes kata-cni can produce, with the names in cni/errors.ts.
 */
function documented(): Map<number, string> {
  const out = new Map<number, string>();
  const p = join(REPO, 'README.md');
  if (!existsSync(p)) return out;
  const lines = readFileSync(p, 'utf8').split('\n');
  const start = lines.findIndex((l) => /^\|\s*CNI code\s*\|\s*name\s*\|\s*meaning\s*\|/.test(l));
  if (start < 0) return out;
  for (const l of lines.slice(start + 2)) {
    const m = /^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|/.exec(l);
    if (!m) break;
    out.set(Number(m[1]), m[2]!);
  }
  return out;
}

const table = documented();

t.test('the table exists', async (t) => {
  t.ok(table.size > 0, 'a "| CNI code | name | meaning |" table in README.md');
});

t.test('every spec code kata-cni uses and every own code is documented, and nothing else', async (t) => {
  const produced = new Set<number>([...Object.values(CNI_CODES), ...Object.keys(OWN_CODES).map(Number)]);
  t.same(
    [...table.keys()].sort((a, b) => a - b),
    [...produced].sort((a, b) => a - b),
  );
  for (const [code, { name }] of Object.entries(OWN_CODES)) t.equal(table.get(Number(code)), name, `code ${code} is documented as ${name}`);
});

t.test('every error of the suite maps to a documented CNI code', async (t) => {
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const c = cniCodeForKataCode(code);
    t.ok(table.has(c), `${code} -> ${c}`);
    const r = toErrorResult(new KataError(code, 'x'), '1.0.0');
    t.equal(r.code, code === 'E_CNI' ? 199 : c, `${code}: the error result carries it`);
    t.equal(r.details, code, 'details name the suite code');
  }
  t.equal(toErrorResult(new KataError('E_CNI', 'bad', { cniCode: 4 }), '1.0.0').code, 4, 'E_CNI carries its own code');
  t.equal(toErrorResult(new TypeError('boom'), '0.4.0').code, 100, 'an unexpected exception is 100');
});
