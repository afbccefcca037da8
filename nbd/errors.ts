/** The typed errors of the NBD client; every one names the server (its URI) and what to do. */
import { KataError } from '../host/errors.js';
import { errnoName } from './protocol.js';

/** The server broke the protocol; the caller closes the connection. */
export function protocolError(uri: string, what: string, details: Record<string, unknown> = {}): KataError {
  return new KataError('E_NBD_PROTOCOL', `NBD server ${uri}: ${what} (protocol violation; connection closed)`, { uri, ...details });
}

/** The server answered a request with an NBD error value. */
export function requestError(
  uri: string,
  command: string,
  errno: number,
  message: string | undefined,
  details: Record<string, unknown>,
): KataError {
  const text = message ? `: ${message}` : '';
  return new KataError('E_NBD', `NBD server ${uri}: ${command} failed with ${errnoName(errno)}${text}`, {
    uri,
    command,
    errno,
    errnoName: errnoName(errno),
    ...details,
  });
}

/** The connection is gone (server closed it, reset, or we closed it after an earlier failure). */
export function connectionLost(uri: string, why: string, cause?: unknown): KataError {
  return new KataError('E_NBD', `NBD server ${uri}: ${why}`, { uri, disconnected: true }, { cause });
}

export function timeoutError(uri: string, what: string, ms: number): KataError {
  return new KataError('E_TIMEOUT', `NBD server ${uri}: ${what} did not finish within ${ms} ms`, { uri, timeoutMs: ms });
}

/** An AbortSignal fired: a timeout signal maps to E_TIMEOUT, any other abort too (the caller's deadline). */
export function abortError(uri: string, what: string, reason: unknown): KataError {
  const why = reason instanceof Error ? reason.message : String(reason ?? 'aborted');
  return new KataError('E_TIMEOUT', `NBD server ${uri}: ${what} aborted by the caller (${why})`, { uri, aborted: true }, { cause: reason });
}
