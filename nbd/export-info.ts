/** What the handshake learnt about an export, and the checks that make it safe to use. */
import * as P from './protocol.js';

export interface BlockSizes {
  minimum: number;
  preferred: number;
  /** Largest READ/WRITE payload the server accepts (this client caps it at 32 MiB). */
  maximum: number;
  /** False when the server sent no NBD_INFO_BLOCK_SIZE and these are the protocol's defaults. */
  advertised: boolean;
}

export interface ExportInfo {
  /** The name asked for. */
  exportName: string;
  size: number;
  /** Transmission flags as sent. */
  flags: number;
  /** NBD_INFO_NAME / NBD_INFO_DESCRIPTION when the server sent them. */
  name?: string;
  description?: string;
  blockSize: BlockSizes;
  structuredReplies: boolean;
  /** The option that produced this: NBD_OPT_GO, NBD_OPT_INFO or NBD_OPT_EXPORT_NAME. */
  via: string;
}

const DEFAULT_BLOCKS: BlockSizes = {
  minimum: P.DEFAULT_MIN_BLOCK,
  preferred: P.DEFAULT_PREFERRED_BLOCK,
  maximum: P.DEFAULT_MAX_PAYLOAD,
  advertised: false,
};

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/**
 * Fills in the defaults and returns what is wrong with the export, if anything: a size this
 * client cannot address, block sizes that break the spec's rules, or a size that is not a
 * multiple of the minimum block size (every access to its tail would be misaligned).
 */
export function checkExport(info: ExportInfo): string | undefined {
  info.blockSize ??= { ...DEFAULT_BLOCKS };
  const b = info.blockSize;
  if (!(info.flags & P.TF.HAS_FLAGS)) return 'transmission flags without NBD_FLAG_HAS_FLAGS';
  if (!Number.isSafeInteger(info.size)) return `export size ${info.size} exceeds what this client can address (2^53 bytes)`;
  if (b.advertised) {
    if (!isPow2(b.minimum) || b.minimum > 65536) return `minimum block size ${b.minimum} is not a power of 2 up to 64 KiB`;
    if (!isPow2(b.preferred) || b.preferred < b.minimum)
      return `preferred block size ${b.preferred} is not a power of 2 at least the minimum ${b.minimum}`;
    if (b.maximum < b.minimum || (b.maximum % b.minimum !== 0 && b.maximum !== 0xffffffff)) {
      return `maximum payload ${b.maximum} is not a multiple of the minimum block size ${b.minimum}`;
    }
    b.maximum = Math.min(b.maximum - (b.maximum % b.minimum), P.DEFAULT_MAX_PAYLOAD - (P.DEFAULT_MAX_PAYLOAD % b.minimum));
  }
  if (info.size % b.minimum !== 0) return `export size ${info.size} is not a multiple of the minimum block size ${b.minimum}`;
  return undefined;
}
