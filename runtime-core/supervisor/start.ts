/**
 * What `sandbox up` starts as a sandbox's supervisor: main.ts from its one-file bundle when
 * that is fresh (cli/bundle-entry.ts), else from the ES modules. Same arguments as main.ts.
 *
 *   node supervisor/start.js --id ID [--netns NAME|PATH] [--config FILE]
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshBundle, runBundle } from '../cli/bundle-entry.js';

const bundle = freshBundle(dirname(fileURLToPath(import.meta.url)), 'main');
if (bundle) runBundle(bundle);
else await import('./main.js');
