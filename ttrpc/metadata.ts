/**
 * ttRPC metadata: a repeated KeyValue in the Request, where a key may repeat (Go's `ttrpc.MD`,
 * map[string][]string). containerd's namespace key is `containerd-namespace-ttrpc`.
 */
import type { KeyValue } from './generated/ttrpc/request_pb.js';

/** What a caller passes: one value or several per key. */
export type MetadataInit = Readonly<Record<string, string | readonly string[]>>;
/** What a handler receives: every value of every key, in the order they came. */
export type Metadata = ReadonlyMap<string, readonly string[]>;

export function toKeyValues(md: MetadataInit | undefined): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  for (const [key, v] of Object.entries(md ?? {})) {
    for (const value of typeof v === 'string' ? [v] : v) out.push({ key, value });
  }
  return out;
}

export function fromKeyValues(kvs: readonly KeyValue[]): Metadata {
  const md = new Map<string, string[]>();
  for (const { key, value } of kvs) {
    const list = md.get(key);
    if (list) list.push(value);
    else md.set(key, [value]);
  }
  return md;
}
