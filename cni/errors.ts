import { KataError, type ErrorCode } from '../host/errors.js';

/**
 * CNI error results: `{cniVersion, code, msg, details}` on stdout, exit status 1 (CNI spec,
 * "Error"). Codes below 100 are the spec's; 100 and up are kata-cni's own, one per class of
 * failure, each documented in the README (a test checks that every code is).
 */
export const CNI_CODES = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot serve ADD (spec text after the v1.1.0 tag). */
  NOT_AVAILABLE: 50,
} as const;

/** kata-cni's own codes (100+), with what each means; the README has the same table. */
export const OWN_CODES: Readonly<Record<number, { name: string; meaning: string }>> = {
  100: { name: 'internal', meaning: 'a bug: an invariant did not hold (E_INTERNAL or an unexpected exception); details carry the stack' },
  101: { name: 'host-command-failed', meaning: 'a host command (ip, tc, nsenter) exited non-zero (E_EXEC); msg carries its stderr' },
  102: { name: 'host-command-timeout', meaning: 'a host command did not finish in time and was killed (E_EXEC_TIMEOUT)' },
  103: { name: 'host-command-missing', meaning: 'ip, tc or nsenter is not installed (E_EXEC_NOT_FOUND): install iproute2 / util-linux' },
  104: { name: 'invalid-name', meaning: 'an interface or namespace name is not acceptable to Linux (E_INVALID_NAME)' },
  105: { name: 'invalid-argument', meaning: 'a value handed to the endpoint code is malformed (E_INVALID_ARGUMENT)' },
  106: { name: 'netns-vanished', meaning: 'the network namespace disappeared while the plugin worked in it (E_NETNS_NOT_FOUND)' },
  107: { name: 'link-not-found', meaning: 'CNI_IFNAME (or the tap) does not exist in CNI_NETNS (E_LINK_NOT_FOUND)' },
  108: {
    name: 'link-exists',
    meaning: 'the tap name is already taken in CNI_NETNS (E_LINK_EXISTS): a previous ADD was not DELeted, or the template collides',
  },
  109: { name: 'unsupported', meaning: 'the interface kind cannot be attached with the configured model (E_UNSUPPORTED)' },
  110: { name: 'kernel-feature-missing', meaning: 'the kernel lacks tun, ingress, u32, mirred or macvtap (E_KERNEL_FEATURE)' },
  111: { name: 'netlink-rejected', meaning: 'the kernel rejected an ip/tc command (E_NETLINK); msg names the command and the answer' },
  112: { name: 'sysfs', meaning: 'a sysfs read or write failed (E_SYSFS)' },
  113: { name: 'state', meaning: 'an attachment record under the state directory is unreadable or inconsistent (E_STATE)' },
  120: { name: 'check-failed', meaning: 'CHECK found the attachment incomplete or changed; msg lists what is missing or wrong' },
  121: { name: 'gc-incomplete', meaning: 'GC could not remove every stale attachment; details list each failure' },
  199: { name: 'other', meaning: 'any other kata-resources error; details start with its code (E_...)' },
};

/** Our error-catalogue codes -> CNI codes. Codes not listed map to 199. */
const KATA_TO_CNI: Partial<Record<ErrorCode, number>> = {
  E_INTERNAL: 100,
  E_EXEC: 101,
  E_EXEC_TIMEOUT: 102,
  E_EXEC_NOT_FOUND: 103,
  E_INVALID_NAME: 104,
  E_INVALID_ARGUMENT: 105,
  E_NETNS_NOT_FOUND: 106,
  E_LINK_NOT_FOUND: 107,
  E_LINK_EXISTS: 108,
  E_UNSUPPORTED: 109,
  E_KERNEL_FEATURE: 110,
  E_NETLINK: 111,
  E_SYSFS: 112,
  E_STATE: 113,
  E_CONFIG: CNI_CODES.INVALID_CONFIG,
  E_BUSY: CNI_CODES.TRY_AGAIN_LATER,
  E_TIMEOUT: CNI_CODES.TRY_AGAIN_LATER,
  E_LOCKED: CNI_CODES.TRY_AGAIN_LATER,
};

export function cniCodeForKataCode(code: ErrorCode): number {
  return KATA_TO_CNI[code] ?? 199;
}

/** A failure that already has its CNI code. */
export class CniError extends Error {
  constructor(
    readonly cniCode: number,
    msg: string,
    readonly details = '',
  ) {
    super(msg);
    this.name = 'CniError';
  }
}

export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** Any thrown value as a CNI error result. */
export function toErrorResult(e: unknown, cniVersion: string): CniErrorResult {
  if (e instanceof CniError) return withDetails({ cniVersion, code: e.cniCode, msg: e.message }, e.details);
  if (e instanceof KataError) {
    const code = e.code === 'E_CNI' && typeof e.details.cniCode === 'number' ? e.details.cniCode : cniCodeForKataCode(e.code);
    return withDetails({ cniVersion, code, msg: e.message }, e.code);
  }
  const err = e instanceof Error ? e : new Error(String(e));
  return withDetails(
    { cniVersion, code: 100, msg: `internal error: ${err.message}` },
    (err.stack ?? '').split('\n').slice(0, 6).join(' | '),
  );
}

/**
 * `details` carries what `msg` does not: lines of it that msg already says are dropped (libcni
 * shows both, joined, so the same text would be read twice), and none is set when nothing is left.
 */
function withDetails(r: CniErrorResult, details: string): CniErrorResult {
  const rest = details
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !r.msg.includes(l));
  if (rest.length > 0) r.details = rest.join('\n');
  return r;
}
