import { mark, startTiming } from '../timing.js';
import { runCached } from './cached-script.js';
import { openPayload, PAYLOAD_KEY, TRAIN_KEY } from './payload.js';

/**
 * The first JavaScript of the kata-cni executable (cni/build/bundle.mjs): the here-document that
 * the shell lines (shell-boot.ts) hand Node as /dev/fd/8, with the executable's path after it on
 * the command line. The only part V8 compiles from source at every call, so it does as little as
 * it can: it reads the executable's bytes, finds the payload after the here-document
 * (payload.ts) and runs the head (launcher.ts), which travels in the payload with a code cache of
 * its own: the head takes over the call's helpers and runs the plugin's code, and its functions
 * (the helpers' pipes) run through the whole call, so compiled from source they would cost about
 * a millisecond at every start (bench/cni.ts).
 *
 * KATA_CNI_TRAIN is false in the shipped file (esbuild removes that code). In the training copy
 * (cni/build/train-cache.mjs) the body's cache is the file named by KATA_CNI_TRAIN_CACHE (handed to
 * the head through TRAIN_KEY) and the head's that name plus ".head".
 */
declare const KATA_CNI_TRAIN: boolean;

startTiming(process.env);
mark('launcher');
// fd 8, the here-document's pipe, stays open, drained: Node marks the fds it inherits
// close-on-exec at its start (/proc/self/fdinfo shows it), and a drained pipe held by a child
// would hold nothing up. Closed, its number would go to the next file opened (a helper's pipe),
// and whatever reads the main script again (a loader of NODE_OPTIONS does) would open that
// instead: a read of ip's stdin, which hangs.

// argv as for a script run directly: [node, the executable, its arguments].
const self = process.argv.splice(1, 2, process.argv[2] ?? '')[1];
if (!self) throw new Error('kata-cni: run the kata-cni executable itself, not its boot');
const payload = openPayload(self);
(globalThis as { [PAYLOAD_KEY]?: unknown })[PAYLOAD_KEY] = payload;
const train = KATA_CNI_TRAIN ? process.env.KATA_CNI_TRAIN_CACHE : undefined;
if (train) (globalThis as { [TRAIN_KEY]?: string })[TRAIN_KEY] = train;
runCached(payload, 'head', 'headcache', require, mark, 'head-compiled', train && `${train}.head`);
