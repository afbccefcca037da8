/**
 * Open an NBD export: connect, negotiate (structured replies, then NBD_OPT_GO, falling back to
 * NBD_OPT_EXPORT_NAME for servers without GO or without fixed newstyle), and hand the socket to
 * an NbdClient. Connect and handshake share one deadline; on any failure the socket is closed
 * (with NBD_OPT_ABORT while the server still listens to options).
 */
import type { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { NbdClient } from './client.js';
import { abortError, timeoutError } from './errors.js';
import { Handshake } from './handshake.js';
import { OPT } from './protocol.js';
import { formatNbdUri, parseNbdUri, type NbdAddress } from './uri.js';
import { openWire, WireReader, type Wire } from './wire.js';

export interface ConnectOptions {
  /** Connect plus handshake, in ms (default 30000). */
  connectTimeoutMs?: number;
  /** Default deadline of each request, in ms (default 60000). */
  requestTimeoutMs?: number;
  /** Requests on the wire at once (default 16); more wait in a queue. */
  maxInFlight?: number;
  /** Ask for structured replies (default true). */
  structuredReplies?: boolean;
  /** Aborts the connect and handshake (not the connection once open). */
  signal?: AbortSignal;
  log?: Logger;
}

function resolveAddress(target: string | NbdAddress): { addr: NbdAddress; uri: string } {
  const addr = typeof target === 'string' ? parseNbdUri(target) : target;
  return { addr, uri: formatNbdUri(addr) };
}

/**
 * Runs `steps` against a fresh connection within one deadline. The wire is destroyed on timeout
 * or abort (so a pending read fails with that reason) and on any error.
 */
export async function withHandshake<T>(
  target: string | NbdAddress,
  opts: { timeoutMs?: number; signal?: AbortSignal },
  steps: (hs: Handshake, wire: Wire, addr: NbdAddress) => Promise<T>,
): Promise<T> {
  const { addr, uri } = resolveAddress(target);
  const ms = opts.timeoutMs ?? 30_000;
  const started = Date.now();
  const wire = await openWire(addr, uri, ms, opts.signal);
  const hs = new Handshake(wire, new WireReader(wire), uri);
  const stop = (e: KataError): void => wire.destroy(e);
  const timer = setTimeout(() => stop(timeoutError(uri, 'handshake', ms)), Math.max(1, ms - (Date.now() - started)));
  const onAbort = (): void => stop(abortError(uri, 'handshake', opts.signal!.reason));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await steps(hs, wire, addr);
  } catch (e) {
    hs.abort();
    throw wire.failure && wire.failure !== e && isDeadline(wire.failure) ? wire.failure : e;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

function isDeadline(e: KataError): boolean {
  return e.code === 'E_TIMEOUT';
}

export async function connectNbd(target: string | NbdAddress, opts: ConnectOptions = {}): Promise<NbdClient> {
  return withHandshake(
    target,
    { timeoutMs: opts.connectTimeoutMs ?? 30_000, ...(opts.signal ? { signal: opts.signal } : {}) },
    async (hs, wire, addr) => {
      const g = await hs.greet();
      let info;
      if (g.fixedNewstyle) {
        const structured = opts.structuredReplies === false ? false : await hs.structuredReplies();
        const go = await hs.info(OPT.GO, addr.exportName, structured);
        info = go === 'unsupported' ? await hs.exportName(addr.exportName, structured) : go;
      } else {
        info = await hs.exportName(addr.exportName, false);
      }
      opts.log?.debug({ uri: wire.uri, size: info.size, flags: info.flags, via: info.via }, 'nbd export open');
      return new NbdClient(wire, info, hs.reader.leftover(), {
        maxInFlight: opts.maxInFlight ?? 16,
        requestTimeoutMs: opts.requestTimeoutMs ?? 60_000,
        ...(opts.log ? { log: opts.log } : {}),
      });
    },
  );
}
