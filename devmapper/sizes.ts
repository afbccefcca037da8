import { KataError } from '../host/errors.js';

/**
 * Sizes as people write them: "64k", "1G", "512MiB", "10GB" (binary units throughout, as
 * containerd's base_image_size and dmsetup do), "128s" (512-byte sectors), or plain bytes.
 */
const UNITS: Record<string, number> = { '': 1, s: 512, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export const SECTOR = 512;

export function parseSize(text: string, what: string): number {
  const m = /^(\d+)\s*([smgtk]?)(i?b)?$/i.exec(text.trim());
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined || (m[2]!.toLowerCase() === 's' && m[3])) {
    throw new KataError('E_INVALID_ARGUMENT', `${what} "${text}" is not a size (e.g. 64k, 512M, 10G, 128s, or bytes)`, { value: text });
  }
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n) || n <= 0) throw new KataError('E_INVALID_ARGUMENT', `${what} "${text}" must be above 0`, { value: text });
  return n;
}

/** "64KiB", "10GiB", "1536MiB": the largest unit that divides the size. */
export function formatSize(bytes: number): string {
  for (const [u, f] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= f && bytes % f === 0) return `${bytes / f}${u}`;
  }
  return `${bytes}B`;
}
