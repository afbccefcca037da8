/**
 * gRPC status codes, as ttRPC carries them in `google.rpc.Status.code` (containerd maps them with
 * errdefs.FromGRPC: 3 InvalidArgument, 5 NotFound, 6 AlreadyExists, 9 FailedPrecondition,
 * 12 Unimplemented, 14 Unavailable, 1 Canceled, 4 DeadlineExceeded; anything else is "unknown").
 */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcCode = (typeof GrpcCode)[keyof typeof GrpcCode];

const NAMES = new Map<number, string>(Object.entries(GrpcCode).map(([name, code]) => [code, name]));

/** "NOT_FOUND" for 5; "code 42" for a number outside the table. */
export function grpcCodeName(code: number): string {
  return NAMES.get(code) ?? `code ${code}`;
}
