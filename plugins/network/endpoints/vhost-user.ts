import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { KataError } from '../../../host/errors.js';
import type { ScannedLink } from '../types.js';

/**
 * vhost-user network endpoints. Kata's convention: a link (in practice a placeholder device) stands
 * for a vhost-user socket when `/tmp/vhostuser_<IP>/vhu.sock` exists for one of its addresses.
 * Nothing is created on the host; the device spec carries the socket.
 */
const DEFAULT_VHOST_USER_DIR = '/tmp';

/** Linux sun_path is 108 bytes including the NUL. */
const SOCKET_PATH_MAX = 107;

function vhostUserSocketPath(address: string, dir = DEFAULT_VHOST_USER_DIR): string {
  return join(dir, `vhostuser_${address}`, 'vhu.sock');
}

/** The first existing vhost-user socket for one of the link's addresses, or undefined. */
export function findVhostUserSocket(link: ScannedLink, dir = DEFAULT_VHOST_USER_DIR): string | undefined {
  for (const a of link.addresses) {
    if (!/^[0-9a-fA-F.:]+$/.test(a.address)) continue;
    const p = vhostUserSocketPath(a.address, dir);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** An explicitly given socket: absolute and short enough for sun_path. */
export function validateSocketPath(p: string): string {
  if (typeof p !== 'string' || !isAbsolute(p) || p.includes('\0')) {
    throw new KataError('E_INVALID_ARGUMENT', `vhost-user socket ${JSON.stringify(p)} must be an absolute path`, { socket: p });
  }
  if (Buffer.byteLength(p) > SOCKET_PATH_MAX) {
    throw new KataError(
      'E_SOCKET_PATH_TOO_LONG',
      `vhost-user socket ${p} is ${Buffer.byteLength(p)} bytes; a unix socket path may have at most ${SOCKET_PATH_MAX}`,
      { socket: p },
    );
  }
  return p;
}
