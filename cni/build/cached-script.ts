import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Script } from 'node:vm';
import type { Payload, PartName } from './payload.js';

/**
 * Compile one code part of the kata-cni payload with its V8 code cache and run it: the part is a
 * `(function (require) { ... })`, called with the CommonJS require. V8 checks the cache against its
 * version, flags and the source; a Node that differs from the one that built the file rejects it
 * and compiles as usual (only slower). Marks `<mark>-from-cache` or `<mark>` (cni/timing.ts).
 *
 * `train` (only in the training copy, cni/build/train-cache.mjs): the cache is read from that file
 * when there is one, and written back there at exit, now with every function the call ran.
 */
export function runCached(
  payload: Payload,
  code: PartName,
  cache: PartName,
  require: NodeJS.Require,
  mark: (name: string) => void,
  markName: string,
  train?: string,
): void {
  const cachedData =
    train !== undefined
      ? existsSync(train)
        ? readFileSync(train)
        : undefined
      : payload.size(cache) > 0
        ? payload.bytes(cache)
        : undefined;
  const script = new Script(payload.text(code), { filename: `kata-cni:${code}`, ...(cachedData ? { cachedData } : {}) });
  mark(script.cachedDataRejected === false ? `${markName}-from-cache` : markName);
  if (train !== undefined) process.on('exit', () => writeFileSync(train, script.createCachedData()));
  (script.runInThisContext() as (req: NodeJS.Require) => void)(require);
}
