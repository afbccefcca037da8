/**
 * One catalogue of coded errors for the whole project. Every error the project throws is a
 * KataError (or a subclass) whose `code` is a key of ERROR_CODES; the README documents each code
 * (a test checks that it does). Messages name the object that failed and, where there is one, the fix.
 */
export const ERROR_CODES = {
  E_EXEC: 'a host command exited non-zero; the message carries its stderr',
  E_EXEC_TIMEOUT: 'a host command did not finish within its timeout and was killed',
  E_EXEC_NOT_FOUND: 'a host binary is missing; install the package named in the message',
  E_INVALID_NAME: 'an interface, namespace, sandbox or container name is not acceptable (too long, bad characters)',
  E_INVALID_ARGUMENT: 'an argument or input value is malformed',
  E_NETNS_NOT_FOUND: 'the network namespace does not exist',
  E_LINK_NOT_FOUND: 'a network link does not exist (or vanished during the operation)',
  E_LINK_EXISTS: 'a network link that the operation would create already exists',
  E_BUSY: 'the kernel answered EBUSY after all retries',
  E_UNSUPPORTED: 'the requested kind, mode or combination is not supported (the message says what is)',
  E_KERNEL_FEATURE: 'the running kernel lacks a feature (module) the operation needs',
  E_NETLINK: 'an ip/tc batch command failed; the message names the command and the kernel answer',
  E_SYSFS: 'a sysfs read or write failed',
  E_CONFIG: 'a configuration file or value is invalid; the message names the file, key and expected type',
  E_PATH_UNSAFE: 'a path escapes its directory (symlink, "..", inside another share), or a rw share others can reach',
  E_DAEMON_START: 'a daemon (virtiofsd, QEMU) failed to start or become ready; the message carries its last stderr lines',
  E_DAEMON_CRASHED: 'a daemon exited unexpectedly',
  E_SOCKET_PATH_TOO_LONG: 'a unix socket path exceeds the 107-byte limit',
  E_TIMEOUT: 'an operation did not complete within its deadline',
  E_QMP: 'QEMU answered a QMP command with an error',
  E_AGENT: 'the guest agent answered a request with an error or did not answer',
  E_STATE: 'persisted sandbox state is missing, unreadable or inconsistent',
  E_SANDBOX_NOT_FOUND: 'no sandbox with that id is known',
  E_SANDBOX_EXISTS: 'a sandbox with that id already exists',
  E_LOCKED: 'another live process holds the sandbox lock (the message names its pid); retry once it is done',
  E_MOUNT: 'a mount or unmount failed',
  E_DEVICE_BUSY:
    'a host block device or image file is in use on the host (mounted, held, swap, a loop backing file); a guest would corrupt it',
  E_CNI: 'a CNI request is invalid (the CNI error code is carried separately)',
  E_TTRPC: 'a ttRPC call failed: the peer answered a non-zero status, or broke the protocol (the gRPC code is in details.grpcCode)',
  E_TTRPC_CLOSED: 'the ttRPC connection closed (EOF, EPIPE, ECONNRESET, or closed locally) before the call was answered',
  E_NBD: 'an NBD server refused an option or request, or the connection to it was lost; details carry the NBD error or option reply',
  E_NBD_PROTOCOL: 'an NBD server broke the protocol (bad magic, unknown cookie, oversized or overrunning reply); the connection was closed',
  E_NBD_READ_ONLY: 'a write, trim or zero was refused before sending because the NBD export is read-only',
  E_DEVMAPPER: 'a device-mapper operation (dmsetup) failed or gave an unexpected answer; the message carries its stderr',
  E_INTERNAL: 'a bug: an invariant did not hold',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The HTTP status a code stands for (fastify's pattern: the status lives with the code). The
 * management API answers with it, so nothing a caller did wrong comes back as 500. Unlisted: 500.
 */
const ERROR_STATUS: Partial<Record<ErrorCode, number>> = {
  E_INVALID_NAME: 400,
  E_INVALID_ARGUMENT: 400,
  E_CONFIG: 400,
  E_PATH_UNSAFE: 400,
  E_SOCKET_PATH_TOO_LONG: 400,
  E_CNI: 400,
  E_SANDBOX_NOT_FOUND: 404,
  E_NETNS_NOT_FOUND: 404,
  E_LINK_NOT_FOUND: 404,
  E_SANDBOX_EXISTS: 409,
  E_LINK_EXISTS: 409,
  E_LOCKED: 409,
  E_STATE: 409,
  E_BUSY: 409,
  E_DEVICE_BUSY: 409,
  E_UNSUPPORTED: 501,
  E_KERNEL_FEATURE: 501,
  E_AGENT: 502,
  E_QMP: 502,
  E_TIMEOUT: 504,
  E_TTRPC: 502,
  E_TTRPC_CLOSED: 502,
  E_NBD: 502,
  E_NBD_PROTOCOL: 502,
  E_NBD_READ_ONLY: 409,
  E_EXEC_TIMEOUT: 504,
};

export function statusOf(code: ErrorCode): number {
  return ERROR_STATUS[code] ?? 500;
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && code in ERROR_CODES;
}

export class KataError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KataError';
    this.code = code;
    this.details = details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.details };
  }
}

export class ExecError extends KataError {
  readonly command: string;
  readonly stderr: string;
  readonly exitCode: number | undefined;

  constructor(
    code: 'E_EXEC' | 'E_EXEC_TIMEOUT' | 'E_EXEC_NOT_FOUND',
    command: string,
    stderr: string,
    exitCode: number | undefined,
    message?: string,
  ) {
    const tail = stderr.trim().split('\n').slice(-5).join(' | ');
    super(
      code,
      message ?? `${command}: ${code === 'E_EXEC_TIMEOUT' ? 'timed out' : `exited ${exitCode ?? '?'}`}${tail ? `: ${tail}` : ''}`,
      { command, exitCode },
    );
    this.name = 'ExecError';
    this.command = command;
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

/** A failed line in an `ip -batch` / `tc -batch` run: which command, and what the kernel said. */
export class NetlinkError extends KataError {
  readonly line: string;
  readonly kernelMessage: string;

  constructor(tool: 'ip' | 'tc', netns: string, line: string, kernelMessage: string, code: ErrorCode = 'E_NETLINK') {
    super(code, `${tool} ${line} (netns ${netns}): ${kernelMessage.trim() || 'failed'}`, { tool, netns, line });
    this.name = 'NetlinkError';
    this.line = line;
    this.kernelMessage = kernelMessage;
  }
}

export function isKataError(e: unknown, code?: ErrorCode): e is KataError {
  return e instanceof KataError && (code === undefined || e.code === code);
}

/** Classify a kernel/iproute2 message into the closest error code. */
export function codeForKernelMessage(msg: string): ErrorCode {
  if (/Cannot find device|does not exist|No such device|not found/i.test(msg)) return 'E_LINK_NOT_FOUND';
  if (/File exists/i.test(msg)) return 'E_LINK_EXISTS';
  if (/Device or resource busy/i.test(msg)) return 'E_BUSY';
  if (/Cannot open network namespace/i.test(msg)) return 'E_NETNS_NOT_FOUND';
  if (/Unknown device type|Operation not supported|not supported/i.test(msg)) return 'E_KERNEL_FEATURE';
  return 'E_NETLINK';
}
