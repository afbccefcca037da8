// Writes runtime-core/config/generated/config-validator.ts (the configuration's JSON Schema check as
// ajv standalone code) from the built schema: run after tsc (npm run gen:config-validator does both).
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { configValidatorSource } = await import(join(root, 'dist/runtime-core/config/validator-source.js'));
const out = join(root, 'runtime-core/config/generated/config-validator.ts');
writeFileSync(out, configValidatorSource());
process.stderr.write(`config validator: ${out}\n`);
