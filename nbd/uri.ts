/**
 * NBD URIs (NetworkBlockDevice/nbd doc/uri.md): `nbd://host[:port]/export` and
 * `nbd+unix:///export?socket=PATH`. The export name is the path without its leading "/",
 * percent-decoded. TLS schemes (`nbds`, `nbds+unix`) and TLS query parameters are refused: this
 * client has no TLS. Unknown query parameters are diagnosed, as the spec asks.
 */
import { KataError } from '../host/errors.js';

const NBD_DEFAULT_PORT = 10809;

export type NbdAddress =
  | { transport: 'tcp'; host: string; port: number; exportName: string }
  | { transport: 'unix'; socket: string; exportName: string };

const TLS_PARAMS = new Set(['tls-type', 'tls-hostname', 'tls-verify-peer', 'tls-certificates', 'tls-psk-file']);

function bad(uri: string, why: string): KataError {
  return new KataError('E_INVALID_ARGUMENT', `NBD URI "${uri}": ${why} (forms: nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH)`, {
    uri,
  });
}

function noTls(uri: string, why: string): KataError {
  return new KataError('E_UNSUPPORTED', `NBD URI "${uri}": ${why}: TLS is not supported by this client; use nbd:// or nbd+unix://`, {
    uri,
    tls: true,
  });
}

function decode(uri: string, s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad(uri, `${what} has a malformed percent-encoding`);
  }
}

/** The query as RFC 3986 pairs ("+" stays "+", unlike form encoding). */
function queryPairs(uri: string, query: string): [string, string][] {
  if (query === '') return [];
  return query.split('&').map((part) => {
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    return [decode(uri, k, 'a query key'), decode(uri, eq < 0 ? '' : part.slice(eq + 1), `query parameter "${k}"`)];
  });
}

export function parseNbdUri(uri: string): NbdAddress {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/.exec(uri);
  if (!m) throw bad(uri, 'not a URI with an authority part ("scheme://...")');
  const scheme = m[1]!.toLowerCase();
  const authority = m[2]!;
  const path = m[3]!;
  if (m[5] !== undefined) throw bad(uri, 'a fragment ("#...") has no meaning in an NBD URI');
  if (scheme === 'nbds' || scheme === 'nbds+unix') throw noTls(uri, `scheme ${scheme}: requires TLS`);
  if (scheme !== 'nbd' && scheme !== 'nbd+unix') throw bad(uri, `unknown scheme "${scheme}"`);
  const exportName = path === '' ? '' : decode(uri, path.slice(1), 'the export name');
  if (exportName.includes('\0')) throw bad(uri, 'the export name contains NUL');
  if (Buffer.byteLength(exportName) > 4096) throw bad(uri, 'the export name is longer than 4096 bytes');
  let socket: string | undefined;
  for (const [k, v] of queryPairs(uri, m[4] ?? '')) {
    if (TLS_PARAMS.has(k)) throw noTls(uri, `query parameter ${k}`);
    if (k === 'socket' && scheme === 'nbd+unix') {
      if (socket !== undefined) throw bad(uri, 'more than one socket parameter');
      socket = v;
    } else throw bad(uri, `unknown query parameter "${k}"`);
  }
  if (/@/.test(authority)) throw noTls(uri, 'user information is only used for TLS authentication');
  if (scheme === 'nbd+unix') {
    if (authority !== '') throw bad(uri, 'nbd+unix takes no host (write nbd+unix:///EXPORT?socket=PATH)');
    if (!socket) throw bad(uri, 'nbd+unix needs a socket=PATH query parameter');
    return { transport: 'unix', socket, exportName };
  }
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]*)(?::(\d*))?$/.exec(authority);
  if (!hp || hp[1] === '') throw bad(uri, 'nbd:// needs a host');
  const host = hp[1]!.startsWith('[') ? hp[1]!.slice(1, -1) : decode(uri, hp[1]!, 'the host');
  const port = hp[2] === undefined || hp[2] === '' ? NBD_DEFAULT_PORT : Number(hp[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(uri, `port "${hp[2]}" is not 1..65535`);
  return { transport: 'tcp', host, port, exportName };
}

const encodePart = (s: string): string => encodeURIComponent(s).replace(/%2F/g, '/');

/** The canonical URI of an address (for messages and the probe's output). */
export function formatNbdUri(a: NbdAddress): string {
  const name = encodePart(a.exportName);
  if (a.transport === 'unix') return `nbd+unix:///${name}?socket=${encodePart(a.socket)}`;
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `nbd://${host}${a.port === NBD_DEFAULT_PORT ? '' : `:${a.port}`}/${name}`;
}
