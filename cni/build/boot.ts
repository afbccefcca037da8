import { mark, startTiming } from '../timing.js';
import { runCached } from './cached-script.js';
import { PAYLOAD_KEY, readPayload, TRAIN_KEY } from './payload.js';

/**
 * The first JavaScript of the kata-cni executable (cni/build/bundle.mjs; before it only the shell
 * lines of shell-boot.ts, a comment here): the only part V8 compiles from
 * source at every call, so it does as little as it can. It reads the payload (payload.ts) and runs
 * the head (launcher.ts), which travels in the payload with a code cache of its own: the head
 * starts the call's helpers and runs the plugin's code, and its functions (the raw spawn, the
 * helpers' pipes) run through the whole call, so compiled from source they cost about a
 * millisecond at every start (bench/cni.ts).
 *
 * KATA_CNI_TRAIN is false in the shipped file (esbuild removes that code). In the training copy
 * (cni/build/train-cache.mjs) the body's cache is the file named by KATA_CNI_TRAIN_CACHE (handed to
 * the head through TRAIN_KEY) and the head's that name plus ".head".
 */
declare const KATA_CNI_TRAIN: boolean;
declare function kataCniPayload(): void;

startTiming(process.env);
mark('launcher');
const payload = readPayload(kataCniPayload.toString());
(globalThis as { [PAYLOAD_KEY]?: unknown })[PAYLOAD_KEY] = payload;
const train = KATA_CNI_TRAIN ? process.env.KATA_CNI_TRAIN_CACHE : undefined;
if (train) (globalThis as { [TRAIN_KEY]?: string })[TRAIN_KEY] = train;
runCached(payload, 'head', 'headcache', require, mark, 'head-compiled', train && `${train}.head`);
