import { Script } from 'node:vm';
import { startEarlyHelpers } from '../early-helpers.js';
import { mark, startTiming } from '../timing.js';

/**
 * The head of the kata-cni executable (cni/build/bundle.mjs). A CNI plugin is a new process per
 * call, so this runs first and does two things before the plugin's code is compiled:
 *  - starts the call's `ip` and `tc` helpers (early-helpers.ts), whose start then overlaps the rest;
 *  - compiles the plugin's code (a string, KATA_CNI_BODY) with the V8 code cache made at build time
 *    (KATA_CNI_CODE_CACHE, base64), so no function is parsed or compiled at run time. V8 checks the
 *    cache against its own version, flags and the source; a Node that differs from the one that
 *    built the file rejects it and compiles as usual (only slower).
 */
declare const KATA_CNI_BODY: string;
declare const KATA_CNI_CODE_CACHE: string;

startTiming(process.env);
mark('launcher');
startEarlyHelpers(process.env);
mark('helpers-spawned');
const script = new Script(KATA_CNI_BODY, {
  filename: 'kata-cni',
  ...(KATA_CNI_CODE_CACHE === '' ? {} : { cachedData: Buffer.from(KATA_CNI_CODE_CACHE, 'base64') }),
});
mark(script.cachedDataRejected === false ? 'compiled-from-cache' : 'compiled');
(script.runInThisContext() as (req: NodeJS.Require) => void)(require);
