import { changesNothing, notApplied } from './kata-keys.js';
import type { SchemaNode } from './schema.js';

/** A key of the file that this runtime does not apply. */
export interface IgnoredKey {
  /** Dotted key path, e.g. "hypervisor.qemu.rootless". */
  key: string;
  value: unknown;
  /** A Kata setting: why it has no effect here. Undefined: Kata has no such key either (a typo?). */
  reason?: string;
  /** The value is one this runtime behaves like anyway (e.g. false, 0, "", or what it does). */
  changesNothing: boolean;
}

/**
 * Keys present in `value` that the schema does not describe, each classified: a Kata key (with
 * the reason it has no effect here) or unknown. Tables the schema does not describe are walked
 * too (so [factory]'s keys are known Kata keys, and a misspelt table's keys unknown).
 */
export function findIgnoredKeys(value: unknown, schema: SchemaNode | undefined, prefix = ''): IgnoredKey[] {
  const out: IgnoredKey[] = [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const sub = schema?.properties?.[k];
    const isTable = v !== null && typeof v === 'object' && !Array.isArray(v);
    if (sub !== undefined) {
      if (sub.properties !== undefined) out.push(...findIgnoredKeys(v, sub, key));
      continue;
    }
    const kata = notApplied(prefix, k);
    if (kata) {
      out.push({ key, value: v, reason: kata.reason, changesNothing: changesNothing(kata, v) });
      continue;
    }
    if (isTable && (key === 'factory' || key === 'hypervisor' || key === 'agent')) {
      out.push(...findIgnoredKeys(v, undefined, key));
      continue;
    }
    out.push({ key, value: v, changesNothing: false });
  }
  return out;
}
