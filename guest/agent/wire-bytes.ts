/**
 * Bytes in a response, sent as base64 without passing through JSON.stringify: under TCG the
 * guest's V8 spends about 120 ms per MiB escaping-scanning a long string in JSON.stringify, four
 * times what the base64 encoding itself costs; base64 needs no escaping, so it is spliced in.
 */
export class WireBytes {
  constructor(readonly buf: Buffer) {}
}

// Unguessable, so no string a caller controls can be taken for it.
const MARK = `\u0000wire-bytes-${Math.random().toString(36).slice(2)}${Date.now()}\u0000`;
const QUOTED_MARK = JSON.stringify(MARK);

/** JSON.stringify, with every WireBytes value written as a base64 string. */
export function stringifyWithBytes(value: unknown): string {
  const blobs: string[] = [];
  const s = JSON.stringify(value, (_k, v: unknown) => {
    if (!(v instanceof WireBytes)) return v;
    blobs.push(v.buf.toString('base64'));
    return MARK;
  });
  if (blobs.length === 0) return s;
  const parts = s.split(QUOTED_MARK);
  let out = parts[0]!;
  for (let i = 1; i < parts.length; i++) out += `"${blobs[i - 1]}"${parts[i]}`;
  return out;
}
