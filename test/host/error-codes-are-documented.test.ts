import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../../host/errors.js';

// dist/test/host -> repository root
const root = join(import.meta.dirname, '..', '..', '..');

t.test('every error code of the catalogue is documented in the README', async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) {
    t.ok(readme.includes(`\`${code}\``), `${code} is in README.md`);
  }
});
