/**
 * dmsetup (Debian package dmsetup), run as argument arrays through host/exec.ts with timeouts.
 * Always with DM_DISABLE_UDEV=1: without udev (containers, the kernel lab, minimal hosts) dmsetup
 * would otherwise wait for udev to confirm every node; with it libdevmapper creates and removes
 * the /dev/mapper nodes itself, and mknodes() repairs them. A non-zero exit becomes E_DEVMAPPER
 * with dmsetup's stderr; parsers for the outputs live in dm-status.ts.
 */
import { ExecError, KataError, isKataError } from '../host/errors.js';
import { run, type RunResult } from '../host/exec.js';
import {
  parseAllTables,
  parseInfo,
  parseLs,
  parseTableLines,
  parseTargets,
  type DmDeviceRef,
  type DmInfo,
  type DmTableLine,
  type DmTarget,
} from './dm-status.js';

const DMSETUP = 'dmsetup';
const TIMEOUT_MS = 60_000;
const ENV = { DM_DISABLE_UDEV: '1' };

/** A device-mapper name: what /dev/mapper shows. dmsetup allows 127 bytes; no "/" and no white space here. */
export function validateDmName(name: string, what = 'device-mapper name'): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,126}$/.test(name)) {
    throw new KataError('E_INVALID_NAME', `${what} "${name}" must be 1-127 characters of A-Z a-z 0-9 . _ + - (not starting with a sign)`, {
      name,
    });
  }
  return name;
}

/** One table line as dmsetup takes it: "<start> <length> <target> <args...>" (sectors). */
function tableLine(l: DmTableLine): string {
  return [l.start, l.length, l.target, ...l.args].join(' ');
}

/** Run dmsetup; E_DEVMAPPER on a non-zero exit (with its stderr), unless reject is false. */
async function dmsetup(args: readonly string[], opts: { reject?: boolean; input?: string } = {}): Promise<RunResult> {
  try {
    return await run(DMSETUP, args, { env: ENV, timeoutMs: TIMEOUT_MS, reject: opts.reject ?? true, input: opts.input });
  } catch (e) {
    if (e instanceof ExecError && e.code === 'E_EXEC') {
      const msg = e.stderr.trim().split('\n').slice(-4).join(' | ') || `exited ${e.exitCode}`;
      throw new KataError('E_DEVMAPPER', `dmsetup ${args.join(' ')}: ${msg}`, {
        command: e.command,
        stderr: e.stderr,
        exitCode: e.exitCode,
      });
    }
    throw e;
  }
}

export const dmArgv = {
  create: (name: string, lines: readonly DmTableLine[], opts: { readOnly?: boolean } = {}): string[] => [
    'create',
    name,
    ...(opts.readOnly ? ['--readonly'] : []),
    '--table',
    lines.map(tableLine).join('\n'),
  ],
  message: (name: string, sector: number, words: readonly (string | number)[]): string[] => [
    'message',
    name,
    String(sector),
    ...words.map(String),
  ],
  suspend: (name: string, opts: { noFlush?: boolean } = {}): string[] => ['suspend', ...(opts.noFlush ? ['--noflush'] : []), name],
  resume: (name: string): string[] => ['resume', name],
  remove: (name: string, opts: { retry?: boolean; force?: boolean; deferred?: boolean } = {}): string[] => [
    'remove',
    ...(opts.retry ? ['--retry'] : []),
    ...(opts.force ? ['--force'] : []),
    ...(opts.deferred ? ['--deferred'] : []),
    name,
  ],
  table: (name?: string): string[] => ['table', ...(name ? [name] : [])],
  status: (name?: string): string[] => ['status', ...(name ? [name] : [])],
  ls: (target?: string): string[] => ['ls', ...(target ? ['--target', target] : [])],
  targets: (): string[] => ['targets'],
  info: (name: string): string[] => [
    'info',
    '--columns',
    '--noheadings',
    '--separator',
    '|',
    '-o',
    'name,major,minor,attr,open,segments,uuid',
    name,
  ],
  mknodes: (name?: string): string[] => ['mknodes', ...(name ? [name] : [])],
};

export async function dmCreate(name: string, lines: readonly DmTableLine[], opts: { readOnly?: boolean } = {}): Promise<void> {
  await dmsetup(dmArgv.create(validateDmName(name), lines, opts));
  await dmMknodes(name);
}

export async function dmMessage(name: string, sector: number, words: readonly (string | number)[]): Promise<void> {
  await dmsetup(dmArgv.message(name, sector, words));
}

export async function dmSuspend(name: string, opts: { noFlush?: boolean } = {}): Promise<void> {
  await dmsetup(dmArgv.suspend(name, opts));
}

export async function dmResume(name: string): Promise<void> {
  await dmsetup(dmArgv.resume(name));
}

/** Remove a device (with --retry: udev-less hosts still see short-lived openers such as blkid). */
export async function dmRemove(name: string, opts: { force?: boolean; deferred?: boolean } = {}): Promise<void> {
  await dmsetup(dmArgv.remove(name, { retry: true, ...opts }));
}

/** `dmsetup table NAME`: one device's lines. */
export async function dmTable(name: string): Promise<DmTableLine[]> {
  return parseTableLines((await dmsetup(dmArgv.table(name))).stdout);
}

/** `dmsetup table`: every device's lines, by name. */
export async function dmTables(): Promise<Map<string, DmTableLine[]>> {
  return parseAllTables((await dmsetup(dmArgv.table())).stdout);
}

/** Raw `dmsetup status NAME` (parse with parseThinPoolStatus / parseThinStatus). */
export async function dmStatus(name: string): Promise<string> {
  return (await dmsetup(dmArgv.status(name))).stdout;
}

export async function dmLs(target?: string): Promise<DmDeviceRef[]> {
  return parseLs((await dmsetup(dmArgv.ls(target))).stdout);
}

export async function dmTargets(): Promise<DmTarget[]> {
  return parseTargets((await dmsetup(dmArgv.targets())).stdout);
}

/** A device's info, or undefined when there is no device of that name. */
export async function dmInfo(name: string): Promise<DmInfo | undefined> {
  try {
    return parseInfo((await dmsetup(dmArgv.info(name))).stdout);
  } catch (e) {
    if (isKataError(e, 'E_DEVMAPPER') && /Device does not exist|No such device/i.test(String(e.details.stderr))) return undefined;
    throw e;
  }
}

/** Create missing /dev/mapper nodes and remove stale ones (for one device, or all). */
async function dmMknodes(name?: string): Promise<void> {
  await dmsetup(dmArgv.mknodes(name));
}
