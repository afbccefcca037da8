import { type ErrorCode, KataError } from '../host/errors.js';
import { GrpcCode, grpcCodeName } from './codes.js';

type TtrpcErrorCode = 'E_TTRPC' | 'E_TTRPC_CLOSED' | 'E_TIMEOUT';

/**
 * A ttRPC failure that carries a gRPC status code (`grpcCode`, also in `details.grpcCode`).
 *
 * - The client rejects with it: `E_TTRPC` when the peer answered a non-zero status (message = the
 *   peer's status message, e.g. "method Nope") or broke the protocol; `E_TTRPC_CLOSED` (grpcCode 14)
 *   when the connection closed before the answer; `E_TIMEOUT` (grpcCode 4) when the call's own
 *   timeout expired first.
 * - A server handler throws it to answer with exactly that code and message, e.g.
 *   `throw new TtrpcError(GrpcCode.NOT_FOUND, 'process already finished: not found')`.
 */
export class TtrpcError extends KataError {
  readonly grpcCode: number;

  constructor(grpcCode: number, message: string, opts: { code?: TtrpcErrorCode; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(opts.code ?? 'E_TTRPC', message, { ...opts.details, grpcCode, grpcName: grpcCodeName(grpcCode) }, { cause: opts.cause });
    this.name = 'TtrpcError';
    this.grpcCode = grpcCode;
  }
}

/**
 * The one table from the project's error codes to gRPC codes, used when a server handler throws a
 * KataError. Codes not listed answer UNKNOWN (2), which containerd reports as "unknown".
 */
const GRPC_CODE_FOR: Partial<Record<ErrorCode, GrpcCode>> = {
  E_INVALID_ARGUMENT: GrpcCode.INVALID_ARGUMENT,
  E_INVALID_NAME: GrpcCode.INVALID_ARGUMENT,
  E_CONFIG: GrpcCode.INVALID_ARGUMENT,
  E_PATH_UNSAFE: GrpcCode.INVALID_ARGUMENT,
  E_SOCKET_PATH_TOO_LONG: GrpcCode.INVALID_ARGUMENT,
  E_NETNS_NOT_FOUND: GrpcCode.NOT_FOUND,
  E_LINK_NOT_FOUND: GrpcCode.NOT_FOUND,
  E_SANDBOX_NOT_FOUND: GrpcCode.NOT_FOUND,
  E_LINK_EXISTS: GrpcCode.ALREADY_EXISTS,
  E_SANDBOX_EXISTS: GrpcCode.ALREADY_EXISTS,
  E_UNSUPPORTED: GrpcCode.UNIMPLEMENTED,
  E_TIMEOUT: GrpcCode.DEADLINE_EXCEEDED,
  E_EXEC_TIMEOUT: GrpcCode.DEADLINE_EXCEEDED,
  E_KERNEL_FEATURE: GrpcCode.FAILED_PRECONDITION,
  E_EXEC_NOT_FOUND: GrpcCode.FAILED_PRECONDITION,
  E_BUSY: GrpcCode.UNAVAILABLE,
  E_LOCKED: GrpcCode.UNAVAILABLE,
  E_TTRPC_CLOSED: GrpcCode.UNAVAILABLE,
  E_STATE: GrpcCode.INTERNAL,
  E_INTERNAL: GrpcCode.INTERNAL,
};

/**
 * The status a server answers for an error thrown by a handler: a TtrpcError keeps its code and
 * message; a KataError maps through the table above and its message starts with its code
 * ("E_SANDBOX_NOT_FOUND: ..."); anything else is UNKNOWN with its message (as Go's ttrpc does).
 */
export function statusFromError(e: unknown): { code: number; message: string } {
  if (e instanceof TtrpcError && e.code !== 'E_TTRPC_CLOSED') {
    return { code: e.grpcCode === GrpcCode.OK ? GrpcCode.UNKNOWN : e.grpcCode, message: e.message };
  }
  if (e instanceof KataError) return { code: GRPC_CODE_FOR[e.code] ?? GrpcCode.UNKNOWN, message: `${e.code}: ${e.message}` };
  if (e instanceof Error) return { code: e.name === 'AbortError' ? GrpcCode.CANCELLED : GrpcCode.UNKNOWN, message: e.message };
  return { code: GrpcCode.UNKNOWN, message: String(e) };
}
