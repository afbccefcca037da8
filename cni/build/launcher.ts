import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Script } from 'node:vm';
import { startEarlyHelpers } from '../early-helpers.js';
import { mark, startTiming } from '../timing.js';
import { PAYLOAD_KEY, readPayload } from './payload.js';

/**
 * The head of the kata-cni executable (cni/build/bundle.mjs). A CNI plugin is a new process per
 * call, so this runs first and does two things before the plugin's code is compiled:
 *  - starts the call's `ip` helper (early-helpers.ts; `tc` follows once ip has work), whose start then overlaps the rest;
 *  - compiles the plugin's code with the V8 code cache made at build time, so the functions a call
 *    runs are neither parsed nor compiled at run time. V8 checks the cache against its own
 *    version, flags and the source; a Node that differs from the one that built the file rejects it
 *    and compiles as usual (only slower).
 * Both travel in this same file, after the head, inside a comment of a function that is never
 * called (payload.ts): its toString() is a slice of the source V8 already holds.
 *
 * KATA_CNI_TRAIN is false in the shipped file (esbuild removes that code). The build also makes a
 * training copy where it is true (cni/build/train-cache.mjs): it compiles with the cache in the
 * file named by the environment's KATA_CNI_TRAIN_CACHE when there is one, and writes the code cache
 * back there at exit, now with every function the call ran.
 */
declare const KATA_CNI_TRAIN: boolean;
declare function kataCniPayload(): void;

startTiming(process.env);
mark('launcher');
startEarlyHelpers(process.env);
mark('helpers-spawned');
const payload = readPayload(kataCniPayload.toString());
(globalThis as { [PAYLOAD_KEY]?: unknown })[PAYLOAD_KEY] = payload;
const trainCache = KATA_CNI_TRAIN ? process.env.KATA_CNI_TRAIN_CACHE : undefined;
const cachedData =
  trainCache !== undefined
    ? existsSync(trainCache)
      ? readFileSync(trainCache)
      : undefined
    : payload.size('cache') > 0
      ? payload.bytes('cache')
      : undefined;
const script = new Script(payload.text('body'), { filename: 'kata-cni', ...(cachedData ? { cachedData } : {}) });
mark(script.cachedDataRejected === false ? 'compiled-from-cache' : 'compiled');
if (trainCache !== undefined) process.on('exit', () => writeFileSync(trainCache, script.createCachedData()));
(script.runInThisContext() as (req: NodeJS.Require) => void)(require);
