import { CNI_CODES, CniError } from './errors.js';

/**
 * CNI_ARGS ("K=V;K2=V2", spec section 2; deprecated in favour of `args` but still what runtimes and
 * firecracker-containerd pass). Keys kata-cni understands override the plugin config; the
 * tc-redirect-tap names are accepted too, so a conflist can swap that plugin for this one. As with
 * libcni's LoadArgs, an unknown key is an error unless IgnoreUnknown=1/true is among the pairs; the
 * Kubernetes keys every CRI runtime sends are always accepted.
 */
export interface ArgOverrides {
  tapName?: string;
  owner?: number;
  group?: number;
  queues?: number;
}

const KEYS: Readonly<Record<string, keyof ArgOverrides>> = {
  KATA_TAP_NAME: 'tapName',
  KATA_TAP_UID: 'owner',
  KATA_TAP_GID: 'group',
  KATA_TAP_QUEUES: 'queues',
  TC_REDIRECT_TAP_NAME: 'tapName',
  TC_REDIRECT_TAP_UID: 'owner',
  TC_REDIRECT_TAP_GID: 'group',
};

const ALWAYS_ACCEPTED = new Set(['IgnoreUnknown', 'K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID']);

const CNI_ARGS_KEYS = Object.keys(KEYS);

const UINT32_MAX_ID = 4294967294;

function bad(msg: string): CniError {
  return new CniError(CNI_CODES.INVALID_ENV, `CNI_ARGS: ${msg}`);
}

function parseId(key: string, v: string, max: number): number {
  if (!/^[0-9]{1,10}$/.test(v) || Number(v) > max)
    throw bad(`${key}=${v} must be an integer from ${key.endsWith('QUEUES') ? 1 : 0} to ${max}`);
  return Number(v);
}

/**
 * Parse CNI_ARGS; `tapNamePattern` is the schema's pattern for tap name templates. With `onProblem`
 * (DEL, which is best effort and must never stop the rest of a chain's DEL) a bad pair or an unknown
 * key is handed to it and skipped instead of failing the call.
 */
export function parseCniArgs(raw: string, tapNamePattern: RegExp, onProblem?: (e: CniError) => void): ArgOverrides {
  const out: ArgOverrides = {};
  if (raw.trim() === '') return out;
  const fail = (e: CniError): void => {
    if (!onProblem) throw e;
    onProblem(e);
  };
  const pairs: [string, string][] = [];
  for (const part of raw.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) fail(bad(`"${part}" is not of the form KEY=VALUE`));
    else pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  const ignoreUnknown = pairs.some(([k, v]) => k === 'IgnoreUnknown' && /^(1|true)$/i.test(v));
  for (const [k, v] of pairs) {
    const field = KEYS[k];
    if (field === undefined) {
      if (ALWAYS_ACCEPTED.has(k) || ignoreUnknown) continue;
      fail(bad(`unknown key "${k}" (kata-cni knows ${CNI_ARGS_KEYS.join(', ')}; add IgnoreUnknown=1 to pass others through)`));
      continue;
    }
    try {
      if (field === 'tapName') {
        if (!tapNamePattern.test(v) || v.length > 64)
          throw bad(`${k}=${v} is not a valid tap name template (letters, digits, _ . + -, {index}, {ifname})`);
        out.tapName = v;
      } else if (field === 'queues') {
        const q = parseId(k, v, 256);
        if (q < 1) throw bad(`${k}=${v} must be an integer from 1 to 256`);
        out.queues = q;
      } else {
        out[field] = parseId(k, v, UINT32_MAX_ID);
      }
    } catch (e) {
      fail(e as CniError);
    }
  }
  return out;
}
