/**
 * NBD protocol constants (NetworkBlockDevice/nbd doc/proto.md): magics, handshake and option
 * codes, transmission flags, commands, structured reply chunks, error values, and the names the
 * probe prints for them. Hand-written with the rest of nbd/: npm has no maintained NBD client
 * (the few packages are unmaintained servers or bindings to the C libnbd), and the wire format is
 * small and stable.
 */

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
/** The oldstyle handshake's second magic (`cliserv_magic`); not supported, only recognised. */
export const CLISERV_MAGIC = 0x00420281861253n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server, 16 bits) and client flags (32 bits). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
} as const;

export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
/** Error replies have bit 31 set. */
const REP_ERR = 0x80000000;
export const REP_ERR_UNSUP = REP_ERR + 1;
export const REP_ERR_POLICY = REP_ERR + 2;
const REP_ERR_INVALID = REP_ERR + 3;
export const REP_ERR_TLS_REQD = REP_ERR + 5;
export const REP_ERR_UNKNOWN = REP_ERR + 6;
export const REP_ERR_SHUTDOWN = REP_ERR + 7;
const REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8;

const REPLY_NAMES: Record<number, string> = {
  [REP_ACK]: 'NBD_REP_ACK',
  [REP_SERVER]: 'NBD_REP_SERVER',
  [REP_INFO]: 'NBD_REP_INFO',
  4: 'NBD_REP_META_CONTEXT',
  [REP_ERR_UNSUP]: 'NBD_REP_ERR_UNSUP',
  [REP_ERR_POLICY]: 'NBD_REP_ERR_POLICY',
  [REP_ERR_INVALID]: 'NBD_REP_ERR_INVALID',
  [REP_ERR + 4]: 'NBD_REP_ERR_PLATFORM',
  [REP_ERR_TLS_REQD]: 'NBD_REP_ERR_TLS_REQD',
  [REP_ERR_UNKNOWN]: 'NBD_REP_ERR_UNKNOWN',
  [REP_ERR_SHUTDOWN]: 'NBD_REP_ERR_SHUTDOWN',
  [REP_ERR_BLOCK_SIZE_REQD]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
  [REP_ERR + 9]: 'NBD_REP_ERR_TOO_BIG',
  [REP_ERR + 10]: 'NBD_REP_ERR_EXT_HEADER_REQD',
};

export function isReplyError(type: number): boolean {
  return type >= REP_ERR;
}

export function replyName(type: number): string {
  return REPLY_NAMES[type] ?? `reply type 0x${type.toString(16)}`;
}

export function optionName(opt: number): string {
  const e = Object.entries(OPT).find(([, v]) => v === opt);
  return e ? `NBD_OPT_${e[0]}` : `option ${opt}`;
}

export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

/** Transmission flags (16 bits), bit -> name. */
export const TF = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
  BLOCK_STAT_PAYLOAD: 1 << 12,
} as const;

/** The names of the transmission flags set in `flags` (unknown bits as "bit N"). */
export function transmissionFlagNames(flags: number): string[] {
  const names: string[] = [];
  for (let bit = 0; bit < 16; bit++) {
    if (!(flags & (1 << bit))) continue;
    const e = Object.entries(TF).find(([, v]) => v === 1 << bit);
    names.push(e ? e[0] : `bit ${bit}`);
  }
  return names;
}

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const COMMAND_NAMES = Object.fromEntries(Object.entries(CMD).map(([k, v]) => [v, `NBD_CMD_${k}`])) as Record<number, string>;

export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}

export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;

export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;

export function isErrorChunk(type: number): boolean {
  return (type & 0x8000) !== 0;
}

/** NBD error values (the errno numbers the protocol fixed), value -> name. */
const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};
export const ESHUTDOWN = 108;

export function errnoName(value: number): string {
  return ERRNO_NAMES[value] ?? `error ${value}`;
}

/** Sizes of the fixed parts on the wire. */
export const REQUEST_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;

/** Defaults when the server sends no NBD_INFO_BLOCK_SIZE (proto.md "Block size constraints"). */
export const DEFAULT_MIN_BLOCK = 1;
export const DEFAULT_PREFERRED_BLOCK = 4096;
export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;
/** Strings in the protocol MUST be no longer than this. */
export const MAX_STRING = 4096;
