import { CNI_CODES, CniError } from './errors.js';

/**
 * The CNI calling convention (spec section 2, "Parameters"): the command and the attachment come in
 * environment variables, the configuration on stdin.
 */
const COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] as const;
export type CniCommand = (typeof COMMANDS)[number];

export interface CniRequest {
  command: CniCommand;
  containerId: string;
  /** Path of the container's network namespace; "" when not given (allowed for DEL). */
  netns: string;
  ifname: string;
  /** Raw CNI_ARGS ("K=V;K2=V2"). */
  args: string;
  path: string[];
}

/** Environment variables each command needs (the spec's table; CNI_PATH is unused: nothing is delegated). */
const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: [],
  STATUS: [],
  VERSION: [],
};

/** Spec: a container id starts with an alphanumeric, then alphanumerics, "_", "." or "-". */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IFNAMSIZ_MAX = 15;

export function parseCommand(env: NodeJS.ProcessEnv): CniCommand | undefined {
  const c = env.CNI_COMMAND;
  if (c === undefined || c === '') return undefined;
  if (!(COMMANDS as readonly string[]).includes(c)) {
    throw new CniError(CNI_CODES.INVALID_ENV, `CNI_COMMAND "${c}" is not one of ${COMMANDS.join(', ')}`);
  }
  return c as CniCommand;
}

/** Read and check the environment of a call. Errors are code 4 and name the variables. */
export function parseRequest(command: CniCommand, env: NodeJS.ProcessEnv): CniRequest {
  const missing = REQUIRED[command].filter((k) => (env[k] ?? '') === '');
  if (missing.length > 0) {
    throw new CniError(
      CNI_CODES.INVALID_ENV,
      `required environment variables missing: ${missing.join(', ')}`,
      `CNI_COMMAND=${command} needs ${REQUIRED[command].join(', ')}`,
    );
  }
  const req: CniRequest = {
    command,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname: env.CNI_IFNAME ?? '',
    args: env.CNI_ARGS ?? '',
    path: (env.CNI_PATH ?? '').split(':').filter((p) => p !== ''),
  };
  if (req.containerId !== '' && (!CONTAINER_ID.test(req.containerId) || req.containerId.length > 255)) {
    throw new CniError(
      CNI_CODES.INVALID_ENV,
      `CNI_CONTAINERID "${req.containerId}" is not valid: it must start with a letter or digit, then letters, digits, "_", "." or "-"`,
    );
  }
  if (req.ifname !== '') checkIfname(req.ifname);
  if (req.netns !== '' && !req.netns.startsWith('/')) {
    throw new CniError(CNI_CODES.INVALID_ENV, `CNI_NETNS "${req.netns}" must be an absolute path (e.g. /run/netns/NAME)`);
  }
  return req;
}

/**
 * CNI_IFNAME as the kernel accepts it (dev_valid_name: 1..15 bytes, not "." or "..") and restricted
 * to the alphabet the host layer puts on ip/tc batch lines (letters, digits, _ . @ + -).
 */
function checkIfname(name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > IFNAMSIZ_MAX) {
    throw new CniError(
      CNI_CODES.INVALID_ENV,
      `CNI_IFNAME "${name}" is ${bytes} bytes long; Linux interface names have at most ${IFNAMSIZ_MAX}`,
    );
  }
  if (name === '.' || name === '..' || !/^[A-Za-z0-9_.@+-]+$/.test(name)) {
    throw new CniError(
      CNI_CODES.INVALID_ENV,
      `CNI_IFNAME "${name}" is not a usable interface name (letters, digits and _ . @ + - only; not "." or "..")`,
    );
  }
}
