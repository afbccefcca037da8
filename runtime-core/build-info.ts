import { readFileSync } from 'node:fs';

/** What the build baked in (scripts/build-info.mjs writes dist/build-info.json next to dist/runtime-core/). */
export interface BuildInfo {
  version: string;
  commit: string;
  dirty: boolean;
}

export function buildInfo(): BuildInfo {
  try {
    const b = JSON.parse(readFileSync(new URL('../build-info.json', import.meta.url), 'utf8')) as Partial<BuildInfo>;
    return { version: b.version ?? '0.0.0', commit: b.commit ?? 'unknown', dirty: b.dirty === true };
  } catch {
    return { version: '0.0.0', commit: 'unknown', dirty: false };
  }
}

/** "0.1.0 (commit 95e8710..., dirty)". */
export function versionLine(b: BuildInfo = buildInfo()): string {
  return `${b.version} (commit ${b.commit}${b.dirty ? ', with uncommitted changes' : ''})`;
}
