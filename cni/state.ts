import {
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { CNI_CODES, CniError } from './errors.js';

/**
 * One small record per attachment, so that DEL, CHECK and GC know what ADD made even without the
 * Attached object of the ADD process (a CNI call is a fresh process):
 *
 *   <stateDir>/<network>/<containerId>@<ifname>.json
 *
 * "@" cannot occur in a container id, so (containerId, ifname) -> file name is one-to-one. The
 * record is written before the endpoint is attached ("pending", tap name only) and completed
 * after, so even a crash in between leaves DEL enough to find the tap. Writes are atomic
 * (temporary file + rename).
 */
export interface NetnsId {
  dev: number;
  ino: number;
}

export interface AttachmentRecord<A = unknown> {
  kind: 'kata-cni-attachment';
  version: 1;
  network: string;
  containerId: string;
  ifname: string;
  /** CNI_NETNS of the ADD. */
  netns: string;
  /** Identity of that namespace (nsfs inode), so a later namespace at the same path is never touched. */
  netnsId?: NetnsId;
  tapName: string;
  /**
   * The tap's MAC once attached (tcfilter: the kernel's random one; macvtap: the guest MAC). Namespace
   * inodes are reused once a namespace is freed, so the identity above can match a later namespace;
   * a tap of this name with another MAC proves the attachment there is somebody else's.
   */
  tapMac?: string;
  model: string;
  /** The endpoint plugin's Attached; absent while the ADD is in progress ("pending"). */
  attached?: A;
  createdAt: string;
}

function recordDir(stateDir: string, network: string): string {
  return join(stateDir, network);
}

function recordPath(stateDir: string, network: string, containerId: string, ifname: string): string {
  return join(recordDir(stateDir, network), `${containerId}@${ifname}.json`);
}

/** A private directory for files the endpoint makes for this attachment (e.g. a macvtap device node). */
export function runDirFor(stateDir: string, network: string, containerId: string, ifname: string): string {
  return join(recordDir(stateDir, network), `${containerId}@${ifname}.d`);
}

export function netnsIdentity(path: string): NetnsId | undefined {
  try {
    const s = statSync(path);
    return { dev: s.dev, ino: s.ino };
  } catch {
    return undefined;
  }
}

export function writeRecord(stateDir: string, rec: AttachmentRecord): void {
  const file = recordPath(stateDir, rec.network, rec.containerId, rec.ifname);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeNew(tmp, `${JSON.stringify(rec)}\n`, () => mkdirSync(recordDir(stateDir, rec.network), { recursive: true, mode: 0o700 }));
    renameSync(tmp, file);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // The directory is not usable at all (e.g. stateDir is a file: ENOTDIR): nothing was written.
    }
    throw new CniError(
      CNI_CODES.IO_FAILURE,
      // The temporary file is this call's business: the message names the record.
      `cannot write the attachment record ${file}: ${(e as Error).message.replaceAll(tmp, file)} (is stateDir "${stateDir}" writable?)`,
    );
  }
}

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC;

/**
 * Write text to a new file (mode 0600), making its directory (mkdir) only when it is missing. With
 * openSync, writeSync and closeSync, which a call runs anyway, rather than writeFileSync and an
 * mkdirSync each time: the first use of an fs function in a process compiles Node's code for it
 * (writeFileSync's and mkdirSync's about 0.4 ms together, in every ADD).
 */
function writeNew(path: string, text: string, mkdir: () => void): void {
  let fd: number;
  try {
    fd = openSync(path, CREATE, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdir();
    fd = openSync(path, CREATE, 0o600);
  }
  try {
    const buf = Buffer.from(text, 'utf8');
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
  } finally {
    closeSync(fd);
  }
}

/** The record, or undefined when there is none; an unreadable record is reported (code 113). */
export function readRecord<A>(stateDir: string, network: string, containerId: string, ifname: string): AttachmentRecord<A> | undefined {
  const file = recordPath(stateDir, network, containerId, ifname);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CniError(CNI_CODES.IO_FAILURE, `cannot read the attachment record ${file}: ${(e as Error).message}`);
  }
  return parseRecord<A>(text, file);
}

function parseRecord<A>(text: string, file: string): AttachmentRecord<A> {
  let rec: unknown;
  try {
    rec = JSON.parse(text);
  } catch (e) {
    throw new CniError(113, `attachment record ${file} is not valid JSON (${(e as Error).message}); remove it if the attachment is gone`);
  }
  const r = rec as Partial<AttachmentRecord<A>>;
  if (
    r === null ||
    typeof r !== 'object' ||
    r.kind !== 'kata-cni-attachment' ||
    typeof r.tapName !== 'string' ||
    typeof r.containerId !== 'string' ||
    typeof r.ifname !== 'string'
  ) {
    throw new CniError(113, `attachment record ${file} is not a kata-cni attachment record; remove it if the attachment is gone`);
  }
  return r as AttachmentRecord<A>;
}

export function removeRecord(stateDir: string, network: string, containerId: string, ifname: string): void {
  for (const p of [recordPath(stateDir, network, containerId, ifname), runDirFor(stateDir, network, containerId, ifname)]) {
    try {
      removePath(p);
    } catch (e) {
      // A path through a regular file (ENOTDIR) holds no record.
      if ((e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
    }
  }
}

/**
 * rm -rf for one path. What is there is almost always a file (the record) or nothing (the run
 * directory of a tcfilter attachment): an lstat and an unlink. rmSync's recursive walk loads and
 * compiles Node's rimraf module at every DEL (about 0.3 ms), so it is kept for a directory.
 */
function removePath(p: string): void {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (st === undefined) return;
  if (!st.isDirectory()) {
    try {
      unlinkSync(p);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
  }
  rmSync(p, { recursive: true, force: true });
}

/**
 * Records of any network under stateDir, other than `self`'s, made in the namespace
 * `netnsId` for a tap named `tapName`: an attachment that is provably somebody else's.
 */
export function otherClaims(
  stateDir: string,
  self: { network: string; containerId: string; ifname: string },
  netnsId: NetnsId,
  tapName: string,
): AttachmentRecord[] {
  let networks: string[];
  try {
    networks = readdirSync(stateDir);
  } catch {
    return [];
  }
  const out: AttachmentRecord[] = [];
  for (const network of networks) {
    let records: AttachmentRecord[];
    try {
      records = listRecords(stateDir, network).records;
    } catch {
      continue; // not a directory of records
    }
    for (const r of records) {
      if (network === self.network && r.containerId === self.containerId && r.ifname === self.ifname) continue;
      if (r.tapName === tapName && r.netnsId?.ino === netnsId.ino && r.netnsId.dev === netnsId.dev) out.push(r);
    }
  }
  return out;
}

/** Every record of a network (GC); unreadable ones are returned as errors, not thrown. */
export function listRecords<A>(
  stateDir: string,
  network: string,
): { records: AttachmentRecord<A>[]; errors: { file: string; error: Error }[] } {
  const dir = recordDir(stateDir, network);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], errors: [] };
    throw new CniError(CNI_CODES.IO_FAILURE, `cannot list attachment records in ${dir}: ${(e as Error).message}`);
  }
  const records: AttachmentRecord<A>[] = [];
  const errors: { file: string; error: Error }[] = [];
  for (const n of names.sort()) {
    if (!n.endsWith('.json')) continue;
    const file = join(dir, n);
    try {
      records.push(parseRecord<A>(readFileSync(file, 'utf8'), file));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed meanwhile
      errors.push({ file, error: e as Error });
    }
  }
  return { records, errors };
}
