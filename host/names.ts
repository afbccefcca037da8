import { KataError } from './errors.js';

/** Linux IFNAMSIZ is 16 including the NUL: 15 bytes at most. */
const IFNAME_MAX = 15;

/**
 * Check an interface name as the kernel would (dev_valid_name) plus what is safe on an ip/tc
 * batch line: 1..15 bytes, not "." or "..", no "/", ":", whitespace, quotes, ";" or control chars.
 */
export function validateIfName(name: unknown, what = 'interface name'): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new KataError('E_INVALID_NAME', `${what} must be a non-empty string`, { name });
  }
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > IFNAME_MAX) {
    throw new KataError('E_INVALID_NAME', `${what} "${name}" is ${bytes} bytes; Linux allows at most ${IFNAME_MAX}`, { name });
  }
  if (name === '.' || name === '..' || !/^[A-Za-z0-9_.@+-]+$/.test(name)) {
    throw new KataError('E_INVALID_NAME', `${what} "${name}" has characters that are not allowed (use letters, digits and _ . @ + -)`, {
      name,
    });
  }
  return name;
}

/** Namespace names become file names under /run/netns: same alphabet, up to 200 bytes. */
export function validateNetnsName(name: unknown): string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > 200 ||
    name === '.' ||
    name === '..' ||
    !/^[A-Za-z0-9_.+-]+$/.test(name)
  ) {
    throw new KataError(
      'E_INVALID_NAME',
      `network namespace name ${JSON.stringify(name)} is not valid (letters, digits and _ . + -, up to 200 bytes)`,
      { name },
    );
  }
  return name;
}

/** Sandbox and container ids: used in paths, so no "/" and no "..". */
export function validateId(id: unknown, what = 'sandbox id'): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id) || id.includes('..')) {
    throw new KataError(
      'E_INVALID_NAME',
      `${what} ${JSON.stringify(id)} is not valid (1-128 of letters, digits, _ . -; starting with a letter or digit; no "..")`,
      { id },
    );
  }
  return id;
}

export function validateMac(mac: unknown, what = 'MAC address'): string {
  if (typeof mac !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw new KataError('E_INVALID_ARGUMENT', `${what} ${JSON.stringify(mac)} is not of the form aa:bb:cc:dd:ee:ff`, { mac });
  }
  return mac.toLowerCase();
}

/** Linux sun_path is 108 bytes including the NUL. */
export const SOCKET_PATH_MAX = 107;

/** A unix socket path: absolute, no NUL, and short enough for sun_path (E_SOCKET_PATH_TOO_LONG names the fix). */
export function validateSocketPath(p: unknown, what = 'socket', fix = 'use a shorter path'): string {
  if (typeof p !== 'string' || !p.startsWith('/') || p.includes('\0')) {
    throw new KataError('E_INVALID_ARGUMENT', `${what} ${JSON.stringify(p)} must be an absolute path`, { socket: p });
  }
  const n = Buffer.byteLength(p);
  if (n > SOCKET_PATH_MAX) {
    throw new KataError(
      'E_SOCKET_PATH_TOO_LONG',
      `${what} ${p} is ${n} bytes; a unix socket path may have at most ${SOCKET_PATH_MAX}: ${fix}`,
      {
        socket: p,
        path: p,
      },
    );
  }
  return p;
}
