/**
 * Parsers for dmsetup's outputs. The thin-pool and thin status lines follow the kernel's
 * Documentation/admin-guide/device-mapper/thin-provisioning.rst ("Status" sections).
 */
import { KataError } from '../host/errors.js';

export interface DmTableLine {
  /** Sectors. */
  start: number;
  length: number;
  target: string;
  args: string[];
}

export interface DmDeviceRef {
  name: string;
  major: number;
  minor: number;
}

export interface DmTarget {
  name: string;
  version: string;
}

export interface DmInfo {
  name: string;
  major: number;
  minor: number;
  /** dmsetup's attr column, e.g. "L--w" (live table, writeable), "L-sw" (suspended). */
  attr: string;
  suspended: boolean;
  readOnly: boolean;
  openCount: number;
  segments: number;
  uuid: string;
}

export interface ThinPoolStatus {
  transactionId: number;
  usedMetadataBlocks: number;
  totalMetadataBlocks: number;
  usedDataBlocks: number;
  totalDataBlocks: number;
  /** "rw", "ro" or "out_of_data_space". */
  mode: string;
  /** Every other word: discard_passdown / no_discard_passdown, queue_if_no_space / error_if_no_space, needs_check. */
  flags: string[];
  heldMetadataRoot: string | undefined;
  metadataLowWatermark: number | undefined;
}

export interface ThinStatus {
  mappedSectors: number;
  /** undefined when nothing is mapped yet ("-"). */
  highestMappedSector: number | undefined;
}

const bad = (what: string, text: string): KataError =>
  new KataError('E_DEVMAPPER', `unexpected ${what} from dmsetup: "${text.trim().slice(0, 200)}"`, { output: text });

const int = (s: string | undefined, what: string, text: string): number => {
  if (s === undefined || !/^\d+$/.test(s)) throw bad(what, text);
  return Number(s);
};

function parseLine(line: string): DmTableLine {
  const w = line.trim().split(/\s+/);
  if (w.length < 3) throw bad('table line', line);
  return { start: int(w[0], 'table line', line), length: int(w[1], 'table line', line), target: w[2]!, args: w.slice(3) };
}

/** The lines of `dmsetup table NAME` or `dmsetup status NAME`. */
export function parseTableLines(text: string): DmTableLine[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(parseLine);
}

/** `dmsetup table` without a name: "name: <line>" for every device. */
export function parseAllTables(text: string): Map<string, DmTableLine[]> {
  const out = new Map<string, DmTableLine[]>();
  for (const l of text.split('\n')) {
    if (l.trim() === '' || /^No devices found/.test(l)) continue;
    const i = l.indexOf(': ');
    if (i <= 0) throw bad('table listing', l);
    const name = l.slice(0, i);
    out.set(name, [...(out.get(name) ?? []), parseLine(l.slice(i + 2))]);
  }
  return out;
}

/** `dmsetup ls`: "name\t(254:0)" (or the older "(254, 0)"); "No devices found" when empty. */
export function parseLs(text: string): DmDeviceRef[] {
  const out: DmDeviceRef[] = [];
  for (const l of text.split('\n')) {
    if (l.trim() === '' || /^No devices found/.test(l)) continue;
    const m = /^(\S+)\s+\((\d+)(?::|,\s*)(\d+)\)\s*$/.exec(l);
    if (!m) throw bad('device list', l);
    out.push({ name: m[1]!, major: Number(m[2]), minor: Number(m[3]) });
  }
  return out;
}

/** `dmsetup targets`: "thin-pool        v1.22.0". */
export function parseTargets(text: string): DmTarget[] {
  return text
    .split('\n')
    .map((l) => /^(\S+)\s+v(\S+)\s*$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[1]!, version: m[2]! }));
}

/** `dmsetup info --columns --noheadings --separator '|' -o name,major,minor,attr,open,segments,uuid NAME`. */
export function parseInfo(text: string): DmInfo {
  const f = text.trim().split('|');
  if (f.length < 7) throw bad('info', text);
  const attr = f[3]!;
  return {
    name: f[0]!,
    major: int(f[1], 'info', text),
    minor: int(f[2], 'info', text),
    attr,
    suspended: attr[2] === 's',
    readOnly: attr[3] === 'r',
    openCount: int(f[4], 'info', text),
    segments: int(f[5], 'info', text),
    uuid: f.slice(6).join('|'),
  };
}

function single(text: string, target: string): string[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== 1) throw bad(`${target} status (${lines.length} lines)`, text);
  const w = lines[0]!.trim().split(/\s+/);
  if (w[2] !== target) throw bad(`${target} status`, text);
  if (w[3] === 'Fail' || w[3] === 'Error')
    throw new KataError('E_DEVMAPPER', `the ${target} device reports "${w[3]}" (failed metadata or data device): ${text.trim()}`, {
      output: text,
    });
  return w.slice(3);
}

/**
 * `<start> <len> thin-pool <transaction id> <used>/<total metadata blocks> <used>/<total data blocks>
 *  <held metadata root> ro|rw|out_of_data_space [no_]discard_passdown [error|queue]_if_no_space
 *  needs_check|- [<metadata low watermark>]`
 */
export function parseThinPoolStatus(text: string): ThinPoolStatus {
  const w = single(text, 'thin-pool');
  const frac = (s: string | undefined): [number, number] => {
    const m = /^(\d+)\/(\d+)$/.exec(s ?? '');
    if (!m) throw bad('thin-pool status', text);
    return [Number(m[1]), Number(m[2])];
  };
  const [um, tm] = frac(w[1]);
  const [ud, td] = frac(w[2]);
  const mode = w[4];
  if (mode === undefined) throw bad('thin-pool status', text);
  const rest = w.slice(5);
  const last = rest[rest.length - 1];
  const lowWater = last !== undefined && /^\d+$/.test(last) ? Number(rest.pop()) : undefined;
  return {
    transactionId: int(w[0], 'thin-pool status', text),
    usedMetadataBlocks: um,
    totalMetadataBlocks: tm,
    usedDataBlocks: ud,
    totalDataBlocks: td,
    heldMetadataRoot: w[3] === '-' ? undefined : w[3],
    mode,
    flags: rest.filter((x) => x !== '-'),
    metadataLowWatermark: lowWater,
  };
}

/** `<start> <len> thin <nr mapped sectors> <highest mapped sector>|-` */
export function parseThinStatus(text: string): ThinStatus {
  const w = single(text, 'thin');
  return {
    mappedSectors: int(w[0], 'thin status', text),
    highestMappedSector: w[1] === '-' ? undefined : int(w[1], 'thin status', text),
  };
}
