import { closeSync, openSync, readSync } from 'node:fs';

/**
 * The payload of the kata-cni executable (written by cni/build/bundle.mjs, read by boot.ts). The
 * file is a shell script with the plugin's code after its end:
 *
 *     #!/bin/sh
 *     <line 2, shell-boot.ts: ... exec node ... /dev/fd/8 "$0" "$@" 8<<'KATA_CNI_BOOT'>
 *     //                      (the ends of the helpers' here-documents)
 *     <the boot, boot.ts>     (the here-document Node runs, as /dev/fd/8)
 *     KATA_CNI_BOOT
 *     {"head":LEN,"headcache":LEN,"body":LEN,"cache":LEN,"pino":LEN}
 *     <head><headcache><body><cache><pino>
 *
 * The parts follow one another as they are, lengths in bytes: the head (launcher.ts) and its V8
 * code cache, the plugin's code ("body"), the V8 code cache of the body, and pino's code (read and
 * evaluated only when logging is configured). The shell never reads past the here-document (it execs Node
 * first) and Node never parses the payload as JavaScript: the boot reads the file as bytes and
 * slices it. Why: as a comment of the JavaScript file (base64 for the caches), the payload cost
 * every call about 1.5 ms (Node decodes and V8 scans the whole 500 KiB as source; base64 decoding
 * the caches); read as bytes it costs a fraction of that (bench/cni.ts, README "Startup cost").
 * The code parts are ASCII (esbuild's output; the build checks it), so a latin1 slice is the
 * source as V8 compiled it when the caches were made.
 */
export type PartName = 'head' | 'headcache' | 'body' | 'cache' | 'pino';

/** The parts in file order: pino last, read only when logging is configured. */
export const PART_ORDER: readonly PartName[] = ['head', 'headcache', 'body', 'cache', 'pino'];

/** The here-document's end: the line after the boot, which the payload's header line follows. */
export const BOOT_END = 'KATA_CNI_BOOT';

/** The shell lines, the boot and the header line fit in this many bytes at the file's start (the build checks it). */
export const PREAMBLE_MAX = 16 * 1024;

export interface Payload {
  /** A code part as text. */
  text(part: PartName): string;
  /** A part as bytes. */
  bytes(part: PartName): Buffer;
  /** Length of the part in bytes (0: absent). */
  size(part: PartName): number;
}

/** Where the header line is in a file's first bytes: [its start, its end]; undefined: none. */
function headerSpan(start: Buffer): [number, number] | undefined {
  // The first line that is the here-document's end: line 2 names it only after `<<'`, and the
  // boot's code spells its newlines as escapes.
  const end = start.indexOf(`\n${BOOT_END}\n`);
  if (end < 0) return undefined;
  const from = end + BOOT_END.length + 2;
  const nl = start.indexOf(10, from);
  return nl < 0 ? undefined : [from, nl];
}

/**
 * The payload of an executable: `read(position, length)` gives its bytes (fewer at the file's end).
 * All parts but pino are read at once (one read, into one buffer), pino when it is first asked for.
 */
function payloadOf(read: (position: number, length: number) => Buffer): Payload {
  const start = read(0, PREAMBLE_MAX);
  const span = headerSpan(start);
  if (!span) throw new Error('kata-cni: the payload is missing from the executable (rebuild it: npm run build:cni)');
  const lengths = JSON.parse(start.toString('latin1', span[0], span[1])) as Partial<Record<PartName, number>>;
  const spans = new Map<PartName, [number, number]>();
  let from = span[1] + 1;
  for (const part of PART_ORDER) {
    const len = lengths[part] ?? 0;
    spans.set(part, [from, len]);
    from += len;
  }
  const [mainAt] = spans.get('head')!;
  const [pinoAt, pinoLen] = spans.get('pino')!;
  const main = read(mainAt, pinoAt - mainAt);
  if (main.length < pinoAt - mainAt) throw new Error('kata-cni: the executable is cut short (rebuild it: npm run build:cni)');
  let pino: Buffer | undefined;
  const bytes = (part: PartName): Buffer => {
    const [at, len] = spans.get(part)!;
    if (part !== 'pino') return main.subarray(at - mainAt, at - mainAt + len);
    pino ??= read(pinoAt, pinoLen);
    return pino;
  };
  return {
    text: (part) => bytes(part).toString('latin1'),
    bytes,
    size: (part) => spans.get(part)![1],
  };
}

/** The payload of the executable at path (the boot's way: two reads, a third for pino's part when it is used). */
export function openPayload(path: string): Payload {
  let fd: number | undefined = openSync(path, 'r');
  const read = (position: number, length: number): Buffer => {
    const own = fd === undefined;
    const f = fd ?? openSync(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      for (let n = -1; got < length && n !== 0; got += n) n = readSync(f, buf, got, length - got, position + got);
      return buf.subarray(0, got);
    } finally {
      if (own) closeSync(f);
    }
  };
  try {
    return payloadOf(read);
  } finally {
    closeSync(fd);
    fd = undefined;
  }
}

/** The payload of an executable's bytes (for the build's checks and the tests). */
export function readPayload(file: Buffer): Payload {
  return payloadOf((position, length) => file.subarray(position, position + length));
}

/** Where the boot leaves the payload for the head and the plugin's code (pino's part; see cni/build/bundle.mjs). */
export const PAYLOAD_KEY = Symbol.for('kata-cni.payload');

/** In the training copy only: where the boot names the body's code cache file for the head (launcher.ts). */
export const TRAIN_KEY = Symbol.for('kata-cni.train-cache');
