/**
 * The payload of the kata-cni executable (written by cni/build/bundle.mjs, read by boot.ts): the
 * last thing in the file is a function that is never called,
 *
 *     function kataCniPayload(){/*kata-cni payload {"head":[LEN,ENC],"headcache":[...],"body":[...],...}
 *     <head>
 *     <headcache>
 *     <body>
 *     <pino>
 *     <cache>
 *     *\/}
 *
 * whose comment holds the parts one after another, each followed by a newline: the head
 * (launcher.ts) and its V8 code cache, the plugin's code ("body"), pino's code (evaluated only when
 * logging is configured) and the V8 code cache of the body. ENC is "plain" (the text as is: ASCII
 * without a comment end) or "base64" (the code caches, and code that is not plain-safe). Why a function: `kataCniPayload.toString()` is a slice of the
 * source V8 already holds, so nothing is read twice or copied (the source of the whole file, as a
 * CommonJS wrapper's toString would give it, is a new string that V8 flattens at 1-10 ms); and V8
 * only scans a comment, where a string literal of that size costs it 5-10 ms.
 */
export type PartName = 'head' | 'headcache' | 'body' | 'pino' | 'cache';
type Encoding = 'plain' | 'base64';

export const PAYLOAD_MARK = 'kata-cni payload ';

export interface Payload {
  /** A part as text (plain parts are slices of the source, not copies). */
  text(part: PartName): string;
  /** A part as bytes (base64 decoded, or the text as UTF-8). */
  bytes(part: PartName): Buffer;
  /** Length of the part's text in the file (0: absent). */
  size(part: PartName): number;
}

/** Read the payload from the source text of kataCniPayload (or of the whole file). */
export function readPayload(source: string): Payload {
  // kataCniPayload's source starts with the mark (`function kataCniPayload(){/*kata-cni payload `):
  // look there first. A search of the whole text from its end walks back over the parts (450 KiB,
  // about 0.3 ms of every call); it is only for a whole file, whose head may hold the mark as a string.
  const head = source.lastIndexOf(`/*${PAYLOAD_MARK}`, 64);
  const at = head >= 0 ? head : source.lastIndexOf(`/*${PAYLOAD_MARK}`);
  if (at < 0) throw new Error('kata-cni: the payload is missing from the executable (rebuild it: npm run build:cni)');
  const nl = source.indexOf('\n', at);
  const header = JSON.parse(source.slice(at + 2 + PAYLOAD_MARK.length, nl)) as Record<PartName, [number, Encoding] | undefined>;
  const spans = new Map<PartName, [number, number, Encoding]>();
  let from = nl + 1;
  for (const part of ['head', 'headcache', 'body', 'pino', 'cache'] as const) {
    const [len, enc] = header[part] ?? [0, 'plain'];
    spans.set(part, [from, len, enc]);
    from += len + 1;
  }
  const raw = (part: PartName): [string, Encoding] => {
    const [start, len, enc] = spans.get(part)!;
    return [source.slice(start, start + len), enc];
  };
  return {
    text(part) {
      const [s, enc] = raw(part);
      return enc === 'base64' ? Buffer.from(s, 'base64').toString('utf8') : s;
    },
    bytes(part) {
      const [s, enc] = raw(part);
      return Buffer.from(s, enc === 'base64' ? 'base64' : 'utf8');
    },
    size: (part) => spans.get(part)![1],
  };
}

/** Where the boot leaves the payload for the head and the plugin's code (pino's part; see cni/build/bundle.mjs). */
export const PAYLOAD_KEY = Symbol.for('kata-cni.payload');

/** In the training copy only: where the boot names the body's code cache file for the head (launcher.ts). */
export const TRAIN_KEY = Symbol.for('kata-cni.train-cache');
