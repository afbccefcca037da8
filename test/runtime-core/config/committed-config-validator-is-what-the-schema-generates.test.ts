import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configValidatorSource } from '../../../runtime-core/config/validator-source.js';

// dist/test/runtime-core/config -> the package root
const root = join(import.meta.dirname, '..', '..', '..', '..');

t.test('the committed schema check is what the schema generates (else: npm run gen:config-validator)', async (t) => {
  const committed = readFileSync(join(root, 'runtime-core', 'config', 'generated', 'config-validator.ts'), 'utf8');
  t.ok(committed === configValidatorSource(), 'runtime-core/config/generated/config-validator.ts is up to date with schema.ts');
});
