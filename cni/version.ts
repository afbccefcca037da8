import { CNI_CODES, CniError } from './errors.js';

/**
 * CNI spec versions kata-cni speaks. Not 0.1.0/0.2.0: a chained plugin needs prevResult (0.3.0+).
 * CHECK needs 0.4.0+, GC and STATUS 1.1.0+ (as libcni's skel enforces).
 */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compare two x.y.z versions numerically; NaN parts compare as 0. */
function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function atLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}

/** The config's cniVersion, or code 1 / 7 naming the field. */
export function requireSupportedVersion(v: unknown): CniVersion {
  if (v === undefined) throw new CniError(CNI_CODES.INVALID_CONFIG, 'field "cniVersion" is required in the network configuration');
  if (typeof v !== 'string') throw new CniError(CNI_CODES.INVALID_CONFIG, `field "cniVersion" must be a string (got ${JSON.stringify(v)})`);
  if (!isSupportedVersion(v)) {
    throw new CniError(
      CNI_CODES.INCOMPATIBLE_VERSION,
      'incompatible CNI versions',
      `config is "${v}", kata-cni supports ${JSON.stringify(SUPPORTED_VERSIONS)} (0.1.0/0.2.0 cannot chain)`,
    );
  }
  return v;
}

/** Minimum config version for a command (libcni skel: CHECK 0.4.0; GC, STATUS 1.1.0). */
export function requireVersionForCommand(command: string, v: CniVersion): void {
  const min = command === 'CHECK' ? '0.4.0' : command === 'GC' || command === 'STATUS' ? '1.1.0' : undefined;
  if (min && !atLeast(v, min)) {
    throw new CniError(
      CNI_CODES.INCOMPATIBLE_VERSION,
      `config version does not allow ${command}`,
      `cniVersion "${v}" is older than ${min}, the first version with ${command}`,
    );
  }
}

/**
 * VERSION result. The spec says cniVersion echoes the input's; empty or unparsable input (libcni
 * skel ignores stdin for VERSION) gets the newest version we speak.
 */
export function versionResult(stdin: string): { cniVersion: string; supportedVersions: string[] } {
  let v: unknown;
  try {
    v = stdin.trim() === '' ? undefined : (JSON.parse(stdin) as { cniVersion?: unknown })?.cniVersion;
  } catch {
    v = undefined;
  }
  return { cniVersion: typeof v === 'string' && v !== '' ? v : CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}
