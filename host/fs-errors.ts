/**
 * File-system failures as typed errors. An ordinary failure (no permission, a full file system, a
 * name too long) is the caller's or the host's condition, not a bug: it gets a code and a fix, never
 * E_INTERNAL with a stack. Other errno values keep the caller's code.
 */
import { KataError, type ErrorCode } from './errors.js';

const NO_PERMISSION = new Set(['EACCES', 'EPERM', 'EROFS']);
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

/** `what` says what was being done ("cannot read /x/state.json"); `code` is used for other errno values. */
export function fsError(e: unknown, what: string, code: ErrorCode): KataError {
  if (e instanceof KataError) return e;
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const why = errno ?? (e as Error | undefined)?.message ?? String(e);
  const details = { errno };
  if (errno && NO_PERMISSION.has(errno)) {
    return new KataError('E_PERMISSION', `${what}: ${why} (kata-resources runs as root; run it with sudo)`, details, { cause: e });
  }
  if (errno && NO_SPACE.has(errno)) {
    return new KataError(code, `${what}: ${why}, the file system is full; free space there and retry`, details, { cause: e });
  }
  if (errno === 'ENAMETOOLONG') return new KataError('E_INVALID_ARGUMENT', `${what}: ${why}, the name is too long`, details, { cause: e });
  return new KataError(code, `${what}: ${why}`, details, { cause: e });
}
