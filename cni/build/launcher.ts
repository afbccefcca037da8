import { startEarlyHelpers } from '../early-helpers.js';
import { mark } from '../timing.js';
import { runCached } from './cached-script.js';
import { PAYLOAD_KEY, type Payload, TRAIN_KEY } from './payload.js';

/**
 * The head of the kata-cni executable, run by boot.ts from the payload with its own code cache. A
 * CNI plugin is a new process per call, so this
 *  - first takes over the `ip` and `tc` helpers the file's shell lines started before Node
 *    (shell-boot.ts, inherited-helpers.ts), or, run by `node` itself, starts them (early-helpers.ts;
 *    `tc` follows once ip has work), so that their start overlaps the rest;
 *  - then compiles the plugin's code (the payload's "body") with the V8 code cache made at build
 *    time, so the functions a call runs are neither parsed nor compiled at run time.
 *
 * The head is the same code in the shipped file and in the training copy (its code cache is made
 * from the training copy's, so the two must not differ): in the training copy the boot names the
 * body's cache file (TRAIN_KEY), which runCached then reads and writes.
 */

startEarlyHelpers(process.env);
mark('helpers-spawned');
const payload = (globalThis as { [PAYLOAD_KEY]?: Payload })[PAYLOAD_KEY]!;
const train = (globalThis as { [TRAIN_KEY]?: string })[TRAIN_KEY];
runCached(payload, 'body', 'cache', require, mark, 'compiled', train);
