/**
 * Probe an NBD export without opening it for I/O: the greeting, NBD_OPT_LIST, structured
 * replies, and NBD_OPT_INFO (falling back to NBD_OPT_EXPORT_NAME followed by NBD_CMD_DISC on
 * servers without INFO), then NBD_OPT_ABORT. The result is a plain JSON-able object;
 * formatProbe() renders it as text lines.
 */
import type { Socket } from 'node:net';
import type { BlockSizes, ExportInfo } from './export-info.js';
import { withHandshake } from './connect.js';
import * as P from './protocol.js';
import type { NbdAddress } from './uri.js';

export interface NbdProbe {
  uri: string;
  transport: 'unix' | 'tcp';
  exportName: string;
  /** "fixed-newstyle", or "newstyle" for a server that only knows NBD_OPT_EXPORT_NAME. */
  handshake: 'fixed-newstyle' | 'newstyle';
  noZeroes: boolean;
  structuredReplies: boolean;
  size: number;
  flags: number;
  flagNames: string[];
  readOnly: boolean;
  blockSize: BlockSizes;
  name?: string;
  description?: string;
  /** The option the export information came from. */
  infoVia: string;
  /** NBD_OPT_LIST's answer, or null when the server did not list (see listRefused). */
  exports: { name: string; description?: string }[] | null;
  listRefused?: string;
}

export async function probeNbd(target: string | NbdAddress, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<NbdProbe> {
  return withHandshake(target, opts, async (hs, wire, addr) => {
    const g = await hs.greet();
    let exports: NbdProbe['exports'] = null;
    let listRefused: string | undefined;
    let info: ExportInfo | 'unsupported' = 'unsupported';
    let structured = false;
    const exportName = addr.exportName;
    if (g.fixedNewstyle) {
      const l = await hs.list();
      if ('exports' in l) exports = l.exports;
      else listRefused = l.refused;
      structured = await hs.structuredReplies();
      info = await hs.info(P.OPT.INFO, exportName, structured);
    } else listRefused = 'the server does not speak fixed newstyle (no options)';
    if (info === 'unsupported') {
      info = await hs.exportName(exportName, structured);
      disconnect(wire.socket);
    } else hs.abort();
    return {
      uri: hs.uri,
      transport: addr.transport,
      exportName,
      handshake: g.fixedNewstyle ? 'fixed-newstyle' : 'newstyle',
      noZeroes: g.noZeroes,
      structuredReplies: structured,
      size: info.size,
      flags: info.flags,
      flagNames: P.transmissionFlagNames(info.flags),
      readOnly: (info.flags & P.TF.READ_ONLY) !== 0,
      blockSize: info.blockSize,
      ...(info.name !== undefined ? { name: info.name } : {}),
      ...(info.description !== undefined ? { description: info.description } : {}),
      infoVia: info.via,
      exports,
      ...(listRefused ? { listRefused } : {}),
    };
  });
}

/** NBD_CMD_DISC after NBD_OPT_EXPORT_NAME put us in transmission. */
function disconnect(socket: Socket): void {
  const h = Buffer.alloc(P.REQUEST_SIZE);
  h.writeUInt32BE(P.REQUEST_MAGIC, 0);
  h.writeUInt16BE(P.CMD.DISC, 6);
  socket.end(h);
  setTimeout(() => socket.destroy(), 1000).unref();
}

function human(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} bytes` : `${n} bytes (${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]})`;
}

export function formatProbe(p: NbdProbe): string[] {
  const b = p.blockSize;
  const lines = [
    `export "${p.exportName}" at ${p.uri}`,
    `  size: ${human(p.size)}`,
    `  read-only: ${p.readOnly ? 'yes' : 'no'}`,
    `  transmission flags: 0x${p.flags.toString(16).padStart(4, '0')} ${p.flagNames.join(' ')}`,
    `  block sizes: minimum ${b.minimum}, preferred ${b.preferred}, maximum payload ${b.maximum}${b.advertised ? '' : ' (protocol defaults; the server advertised none)'}`,
    `  structured replies: ${p.structuredReplies ? 'yes' : 'no'}`,
    `  handshake: ${p.handshake}${p.noZeroes ? ', no zeroes' : ''}; export information from ${p.infoVia}`,
  ];
  if (p.name !== undefined) lines.push(`  name: ${p.name}`);
  if (p.description !== undefined) lines.push(`  description: ${p.description}`);
  if (p.exports) {
    lines.push(`  exports (${p.exports.length}):`);
    for (const e of p.exports) lines.push(`    "${e.name}"${e.description ? ` - ${e.description}` : ''}`);
  } else lines.push(`  exports: not listed (${p.listRefused})`);
  return lines;
}
