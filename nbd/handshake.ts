/**
 * The NBD handshake (fixed newstyle): greeting, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_LIST,
 * NBD_OPT_INFO / NBD_OPT_GO with NBD_INFO_NAME, _DESCRIPTION and _BLOCK_SIZE, and the fallbacks:
 * a server without fixed newstyle or without GO gets NBD_OPT_EXPORT_NAME; a server without
 * structured replies gets simple replies. A fatal option error ends the session with
 * NBD_OPT_ABORT. Every length the server sends is checked before anything is allocated for it.
 */
import { KataError } from '../host/errors.js';
import { connectionLost, protocolError } from './errors.js';
import { checkExport, type ExportInfo } from './export-info.js';
import * as P from './protocol.js';
import type { WireReader, Wire } from './wire.js';

/** Option replies are small (strings are at most 4096 bytes); anything longer is hostile. */
const MAX_OPTION_REPLY = 64 * 1024;
/** NBD_OPT_LIST answers beyond this many exports are refused. */
const MAX_LIST = 65536;

export interface Greeting {
  fixedNewstyle: boolean;
  noZeroes: boolean;
}

export class Handshake {
  greeting: Greeting = { fixedNewstyle: false, noZeroes: false };

  constructor(
    readonly wire: Wire,
    readonly reader: WireReader,
    readonly uri: string,
  ) {}

  private violation(what: string, details: Record<string, unknown> = {}): KataError {
    const e = protocolError(this.uri, what, details);
    this.wire.destroy(e);
    return e;
  }

  async greet(): Promise<Greeting> {
    const head = await this.reader.read(18).catch((e) => {
      throw isLost(e) ? connectionLost(this.uri, 'the server closed the connection before its greeting was complete', e) : e;
    });
    if (head.readBigUInt64BE(0) !== P.NBDMAGIC) throw this.violation('the greeting does not start with NBDMAGIC (not an NBD server?)');
    const magic = head.readBigUInt64BE(8);
    if (magic === P.CLISERV_MAGIC) {
      const e = new KataError('E_UNSUPPORTED', `NBD server ${this.uri} speaks the oldstyle handshake, which this client does not support`, {
        uri: this.uri,
      });
      this.wire.destroy(e);
      throw e;
    }
    if (magic !== P.IHAVEOPT) throw this.violation(`unknown handshake magic 0x${magic.toString(16)}`);
    const flags = head.readUInt16BE(16);
    this.greeting = { fixedNewstyle: (flags & P.FLAG_FIXED_NEWSTYLE) !== 0, noZeroes: (flags & P.FLAG_NO_ZEROES) !== 0 };
    const client = (this.greeting.fixedNewstyle ? P.FLAG_C_FIXED_NEWSTYLE : 0) | (this.greeting.noZeroes ? P.FLAG_C_NO_ZEROES : 0);
    const out = Buffer.allocUnsafe(4);
    out.writeUInt32BE(client);
    this.wire.socket.write(out);
    return this.greeting;
  }

  private sendOption(opt: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.allocUnsafe(16);
    h.writeBigUInt64BE(P.IHAVEOPT, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.wire.socket.write(data.length ? Buffer.concat([h, data]) : h);
  }

  private async reply(opt: number): Promise<{ type: number; data: Buffer }> {
    const h = await this.reader.read(20);
    if (h.readBigUInt64BE(0) !== P.OPTION_REPLY_MAGIC) throw this.violation(`bad option reply magic in the answer to ${P.optionName(opt)}`);
    const echoed = h.readUInt32BE(8);
    if (echoed !== opt) throw this.violation(`answered ${P.optionName(echoed)} when ${P.optionName(opt)} was asked`);
    const type = h.readUInt32BE(12);
    const len = h.readUInt32BE(16);
    if (len > MAX_OPTION_REPLY)
      throw this.violation(`option reply of ${len} bytes to ${P.optionName(opt)} (limit ${MAX_OPTION_REPLY})`, { length: len });
    return { type, data: len ? await this.reader.read(len) : Buffer.alloc(0) };
  }

  /** The error for a fatal option reply; NBD_REP_ERR_TLS_REQD is "no TLS here". */
  optionError(opt: number, type: number, data: Buffer, exportName?: string): KataError {
    const serverMsg = data.length ? `: ${data.toString('utf8', 0, Math.min(data.length, P.MAX_STRING))}` : '';
    const details = {
      uri: this.uri,
      option: P.optionName(opt),
      reply: P.replyName(type),
      ...(exportName !== undefined ? { exportName } : {}),
    };
    if (type === P.REP_ERR_TLS_REQD) {
      return new KataError('E_UNSUPPORTED', `NBD server ${this.uri} requires TLS, which this client does not support${serverMsg}`, details);
    }
    const what =
      type === P.REP_ERR_UNKNOWN
        ? `export "${exportName}" does not exist (list the exports with "kata-resources nbd probe")`
        : type === P.REP_ERR_POLICY
          ? `${P.optionName(opt)} refused by server policy`
          : type === P.REP_ERR_SHUTDOWN
            ? 'the server is shutting down'
            : `${P.optionName(opt)} failed with ${P.replyName(type)}`;
    return new KataError('E_NBD', `NBD server ${this.uri}: ${what}${serverMsg}`, details);
  }

  /** NBD_OPT_STRUCTURED_REPLY: true when the server accepts, false when it answers any non-fatal error. */
  async structuredReplies(): Promise<boolean> {
    this.sendOption(P.OPT.STRUCTURED_REPLY);
    const r = await this.reply(P.OPT.STRUCTURED_REPLY);
    if (r.type === P.REP_ACK) return true;
    if (!P.isReplyError(r.type)) throw this.violation(`answered NBD_OPT_STRUCTURED_REPLY with ${P.replyName(r.type)}`);
    if (r.type === P.REP_ERR_TLS_REQD || r.type === P.REP_ERR_SHUTDOWN) throw this.optionError(P.OPT.STRUCTURED_REPLY, r.type, r.data);
    return false;
  }

  /** NBD_OPT_LIST: the exports, or the reply name of the error the server gave instead. */
  async list(): Promise<{ exports: { name: string; description?: string }[] } | { refused: string }> {
    this.sendOption(P.OPT.LIST);
    const exports: { name: string; description?: string }[] = [];
    for (;;) {
      const r = await this.reply(P.OPT.LIST);
      if (r.type === P.REP_ACK) return { exports };
      if (P.isReplyError(r.type)) {
        if (r.type === P.REP_ERR_TLS_REQD || r.type === P.REP_ERR_SHUTDOWN) throw this.optionError(P.OPT.LIST, r.type, r.data);
        return { refused: P.replyName(r.type) };
      }
      if (r.type !== P.REP_SERVER) throw this.violation(`answered NBD_OPT_LIST with ${P.replyName(r.type)}`);
      if (r.data.length < 4) throw this.violation('NBD_REP_SERVER shorter than its name length');
      const n = r.data.readUInt32BE(0);
      if (n > r.data.length - 4) throw this.violation(`NBD_REP_SERVER name length ${n} exceeds the reply`, { length: n });
      const description = r.data.toString('utf8', 4 + n);
      exports.push({ name: r.data.toString('utf8', 4, 4 + n), ...(description ? { description } : {}) });
      if (exports.length > MAX_LIST) throw this.violation(`NBD_OPT_LIST returned more than ${MAX_LIST} exports`);
    }
  }

  /**
   * NBD_OPT_GO (enter transmission) or NBD_OPT_INFO (only look). Returns "unsupported" when the
   * server does not know the option, so that the caller can fall back to NBD_OPT_EXPORT_NAME.
   */
  async info(opt: typeof P.OPT.GO | typeof P.OPT.INFO, exportName: string, structured: boolean): Promise<ExportInfo | 'unsupported'> {
    const name = Buffer.from(exportName, 'utf8');
    const wanted = [P.INFO_NAME, P.INFO_DESCRIPTION, P.INFO_BLOCK_SIZE];
    const data = Buffer.alloc(4 + name.length + 2 + 2 * wanted.length);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    data.writeUInt16BE(wanted.length, 4 + name.length);
    for (const [i, w] of wanted.entries()) data.writeUInt16BE(w, 6 + name.length + 2 * i);
    this.sendOption(opt, data);
    const got: Partial<ExportInfo> & { blockSize?: ExportInfo['blockSize'] } = {};
    for (;;) {
      const r = await this.reply(opt);
      if (r.type === P.REP_ACK) break;
      if (P.isReplyError(r.type)) {
        if (r.type === P.REP_ERR_UNSUP) return 'unsupported';
        throw this.optionError(opt, r.type, r.data, exportName);
      }
      if (r.type !== P.REP_INFO) throw this.violation(`answered ${P.optionName(opt)} with ${P.replyName(r.type)}`);
      this.infoItem(r.data, got);
    }
    if (got.size === undefined || got.flags === undefined) throw this.violation(`${P.optionName(opt)} succeeded without NBD_INFO_EXPORT`);
    return this.checked({
      ...got,
      exportName,
      size: got.size,
      flags: got.flags,
      structuredReplies: structured,
      via: P.optionName(opt),
    } as ExportInfo);
  }

  private infoItem(d: Buffer, got: Partial<ExportInfo>): void {
    if (d.length < 2) throw this.violation('NBD_REP_INFO without an information type');
    const t = d.readUInt16BE(0);
    const need = (n: number): void => {
      if (d.length !== n) throw this.violation(`NBD_REP_INFO type ${t} of ${d.length} bytes (expected ${n})`);
    };
    if (t === P.INFO_EXPORT) {
      need(12);
      got.size = Number(d.readBigUInt64BE(2));
      got.flags = d.readUInt16BE(10);
    } else if (t === P.INFO_NAME) got.name = d.toString('utf8', 2);
    else if (t === P.INFO_DESCRIPTION) got.description = d.toString('utf8', 2);
    else if (t === P.INFO_BLOCK_SIZE) {
      need(14);
      got.blockSize = { minimum: d.readUInt32BE(2), preferred: d.readUInt32BE(6), maximum: d.readUInt32BE(10), advertised: true };
    }
    // Unknown information types are ignored, as the spec asks.
  }

  private checked(info: ExportInfo): ExportInfo {
    const problem = checkExport(info);
    if (problem) throw this.violation(problem, { exportName: info.exportName, size: info.size });
    return info;
  }

  /** NBD_OPT_EXPORT_NAME: enters transmission; a server that refuses can only close the connection. */
  async exportName(exportName: string, structured: boolean): Promise<ExportInfo> {
    this.sendOption(P.OPT.EXPORT_NAME, Buffer.from(exportName, 'utf8'));
    const n = this.greeting.noZeroes ? 10 : 134;
    const d = await this.reader.read(n).catch((e) => {
      if (!isLost(e)) throw e;
      throw new KataError(
        'E_NBD',
        `NBD server ${this.uri} closed the connection on NBD_OPT_EXPORT_NAME "${exportName}": the export does not exist or is refused`,
        {
          uri: this.uri,
          exportName,
          option: 'NBD_OPT_EXPORT_NAME',
        },
      );
    });
    return this.checked({
      exportName,
      size: Number(d.readBigUInt64BE(0)),
      flags: d.readUInt16BE(8),
      structuredReplies: structured,
      via: 'NBD_OPT_EXPORT_NAME',
    } as ExportInfo);
  }

  /** Give up option haggling politely (soft disconnect); never waits long for the server. */
  abort(): void {
    if (this.wire.socket.destroyed || !this.greeting.fixedNewstyle) {
      this.wire.socket.destroy();
      return;
    }
    this.sendOption(P.OPT.ABORT);
    this.wire.socket.end();
    setTimeout(() => this.wire.socket.destroy(), 1000).unref();
  }
}

function isLost(e: unknown): boolean {
  return e instanceof KataError && e.code === 'E_NBD' && e.details.disconnected === true;
}
