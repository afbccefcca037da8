import { readFileSync } from 'node:fs';
import { Script } from 'node:vm';
import { startEarlyHelpers } from '../early-helpers.js';
import { mark, startTiming } from '../timing.js';

/**
 * The head of the kata-cni executable (cni/build/bundle.mjs). A CNI plugin is a new process per
 * call, so this runs first and does two things before the plugin's code is compiled:
 *  - starts the call's `ip` and `tc` helpers (early-helpers.ts), whose start then overlaps the rest;
 *  - compiles the plugin's code with the V8 code cache made at build time, so no function of it is
 *    parsed or compiled at run time. V8 checks the cache against its own version, flags and the
 *    source; a Node that differs from the one that built the file rejects it and compiles as usual
 *    (only slower).
 * Both travel in this same file, after the head, inside a comment (base64, one line each): Node
 * scans a comment in well under a ms, where a string literal of that size costs it 5-10 ms.
 */
const PAYLOAD = '/*kata-cni payload:';

startTiming(process.env);
mark('launcher');
startEarlyHelpers(process.env);
mark('helpers-spawned');
const file = readFileSync(process.argv[1]!);
const [body = '', cache = ''] = file
  .subarray(file.lastIndexOf(PAYLOAD) + PAYLOAD.length)
  .toString('latin1')
  .split('\n', 3)
  .slice(1);
const script = new Script(Buffer.from(body, 'base64').toString('utf8'), {
  filename: 'kata-cni',
  ...(cache === '' ? {} : { cachedData: Buffer.from(cache, 'base64') }),
});
mark(script.cachedDataRejected === false ? 'compiled-from-cache' : 'compiled');
(script.runInThisContext() as (req: NodeJS.Require) => void)(require);
