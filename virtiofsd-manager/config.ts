import { KataError } from '../host/errors.js';

/**
 * Configuration of the virtio-fs share of a sandbox (Kata's `shared_fs = "virtio-fs"` knobs).
 * Every field is optional; resolveVirtiofsConfig fills the defaults and names the key of any bad
 * value in an E_CONFIG error ("virtiofs.cache", ...).
 */

/** Cache modes as configured. `never` and `none` are the same mode (Rust and C spellings). */
const CACHE_MODES = ['auto', 'always', 'never', 'none', 'metadata'] as const;
/** Normalised cache mode (C's `none` is `never`). */
export type CacheMode = 'auto' | 'always' | 'never' | 'metadata';

const SANDBOX_MODES = ['namespace', 'chroot', 'none'] as const;
export type SandboxMode = (typeof SANDBOX_MODES)[number];

export interface RestartPolicy {
  /** Restarts allowed within windowMs; 0 = never restart (the default). */
  maxRestarts: number;
  windowMs: number;
}

export interface VirtiofsConfig {
  /** virtiofsd binary (C daemon of QEMU <= 7.2, or the Rust daemon). */
  daemonPath?: string;
  cache?: string;
  /** Worker threads (Kata's default extra args use 1). */
  threadPoolSize?: number;
  /** Daemon sandboxing (C: namespace|chroot; Rust: namespace|chroot|none). Default: namespace. */
  sandbox?: string;
  xattr?: boolean;
  announceSubmounts?: boolean;
  /** Appended verbatim after the generated arguments. */
  extraArgs?: string[];
  /** vhost-user-fs queue size (power of two, at most 1024). */
  queueSize?: number;
  /** Mount tag the guest uses. */
  tag?: string;
  /** Root of the host layout: <root>/sandboxes/<sid>/{mounts,shared,private}. */
  root?: string;
  /** Socket path; default <runDir>/virtiofsd.sock. */
  socketPath?: string;
  /** Chown the socket to the VMM's user (virtiofsd runs as root, the VMM may not). */
  socketOwner?: { uid: number; gid: number };
  startTimeoutMs?: number;
  stopGraceMs?: number;
  /** Restart an unexpectedly exited daemon (off by default: Kata stops the VM instead). */
  restart?: RestartPolicy;
  /** Kill the daemon with its parent (setpriv --pdeathsig). Default true. */
  pdeathsig?: boolean;
  /** Volume sources must resolve inside one of these directories; empty = anywhere. */
  volumeRoots?: string[];
  /**
   * A read-write share of a directory other host users can reach (every directory above it lets
   * them search it): "refuse" (default; the guest's root could leave setuid files there for them)
   * or "allow" (logged as a warning).
   */
  rwShareReachable?: string;
  /**
   * Capabilities the daemon drops (`-o modcaps=` / `--modcaps=`), without the sign: by default
   * mknod (no device nodes from the guest) and setfcap (no file capabilities). Empty: keep all.
   */
  dropCaps?: string[];
}

export interface ResolvedVirtiofsConfig {
  daemonPath: string;
  cache: CacheMode;
  threadPoolSize: number | undefined;
  sandbox: SandboxMode;
  xattr: boolean;
  announceSubmounts: boolean;
  extraArgs: string[];
  queueSize: number;
  tag: string;
  root: string;
  socketPath: string | undefined;
  socketOwner: { uid: number; gid: number } | undefined;
  startTimeoutMs: number;
  stopGraceMs: number;
  restart: RestartPolicy;
  pdeathsig: boolean;
  volumeRoots: string[];
  rwShareReachable: 'refuse' | 'allow';
  dropCaps: string[];
}

const DEFAULT_DAEMON_PATH = '/usr/lib/qemu/virtiofsd';
const DEFAULT_ROOT = '/run/kata-resources';
const DEFAULT_TAG = 'kataShared';
const DEFAULT_QUEUE_SIZE = 1024;
/** CAP_MKNOD: device nodes; CAP_SETFCAP: file capabilities. Both only serve a guest that attacks the host. */
const DEFAULT_DROP_CAPS = ['mknod', 'setfcap'] as const;
export const GUEST_SHARE_DIR = '/run/kata-containers/shared/containers/';

function bad(key: string, value: unknown, expected: string): KataError {
  return new KataError('E_CONFIG', `virtiofs.${key} = ${JSON.stringify(value)} is invalid: expected ${expected}`, {
    key: `virtiofs.${key}`,
    value,
  });
}

function normaliseCache(value: unknown): CacheMode {
  if (value === undefined || value === '') return 'auto';
  if (typeof value !== 'string' || !(CACHE_MODES as readonly string[]).includes(value)) {
    throw bad('cache', value, `one of ${CACHE_MODES.join(', ')}`);
  }
  return value === 'none' ? 'never' : (value as CacheMode);
}

function int(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(key, v, `an integer from ${min} to ${max}`);
  return v;
}

function absPath(key: string, v: unknown): string {
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0')) throw bad(key, v, 'an absolute path');
  return v.length > 1 ? v.replace(/\/+$/, '') : v;
}

function bool(key: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw bad(key, v, 'true or false');
  return v;
}

/** Validate and fill defaults. Does not touch the file system (the daemon checks its binary when it starts). */
export function resolveVirtiofsConfig(c: VirtiofsConfig = {}): ResolvedVirtiofsConfig {
  if (typeof c !== 'object' || c === null) throw bad('', c, 'a table');
  const known = new Set([
    'daemonPath',
    'cache',
    'threadPoolSize',
    'sandbox',
    'xattr',
    'announceSubmounts',
    'extraArgs',
    'queueSize',
    'tag',
    'root',
    'socketPath',
    'socketOwner',
    'startTimeoutMs',
    'stopGraceMs',
    'restart',
    'pdeathsig',
    'volumeRoots',
    'rwShareReachable',
    'dropCaps',
  ]);
  for (const k of Object.keys(c))
    if (!known.has(k))
      throw new KataError('E_CONFIG', `virtiofs.${k} is not a known key (known: ${[...known].join(', ')})`, { key: `virtiofs.${k}` });

  const sandbox = c.sandbox ?? 'namespace';
  if (!(SANDBOX_MODES as readonly string[]).includes(sandbox)) throw bad('sandbox', sandbox, `one of ${SANDBOX_MODES.join(', ')}`);
  const extraArgs = c.extraArgs ?? [];
  if (!Array.isArray(extraArgs) || extraArgs.some((a) => typeof a !== 'string')) throw bad('extraArgs', extraArgs, 'an array of strings');
  const queueSize = c.queueSize === undefined ? DEFAULT_QUEUE_SIZE : int('queueSize', c.queueSize, 1, 1024);
  if ((queueSize & (queueSize - 1)) !== 0) throw bad('queueSize', queueSize, 'a power of two up to 1024');
  const tag = c.tag ?? DEFAULT_TAG;
  if (typeof tag !== 'string' || !/^[A-Za-z0-9_.-]{1,36}$/.test(tag)) throw bad('tag', tag, '1-36 letters, digits, _ . -');
  let socketOwner: { uid: number; gid: number } | undefined;
  if (c.socketOwner !== undefined) {
    const o = c.socketOwner as { uid?: unknown; gid?: unknown };
    socketOwner = { uid: int('socketOwner.uid', o?.uid, 0, 0xfffffffe), gid: int('socketOwner.gid', o?.gid, 0, 0xfffffffe) };
  }
  let restart: RestartPolicy = { maxRestarts: 0, windowMs: 60_000 };
  if (c.restart !== undefined) {
    const r = c.restart as { maxRestarts?: unknown; windowMs?: unknown };
    restart = {
      maxRestarts: int('restart.maxRestarts', r?.maxRestarts, 0, 100),
      windowMs: r?.windowMs === undefined ? 60_000 : int('restart.windowMs', r.windowMs, 1, 86_400_000),
    };
  }
  const volumeRoots = c.volumeRoots ?? [];
  if (!Array.isArray(volumeRoots)) throw bad('volumeRoots', volumeRoots, 'an array of absolute paths');
  const reachable = c.rwShareReachable ?? 'refuse';
  if (reachable !== 'refuse' && reachable !== 'allow') throw bad('rwShareReachable', reachable, '"refuse" or "allow"');
  const dropCaps = c.dropCaps ?? [...DEFAULT_DROP_CAPS];
  if (!Array.isArray(dropCaps) || dropCaps.some((x) => typeof x !== 'string' || !/^[a-z_]{2,32}$/.test(x))) {
    throw bad('dropCaps', dropCaps, 'an array of capability names without CAP_ (e.g. ["mknod", "setfcap"])');
  }

  return {
    daemonPath: c.daemonPath === undefined ? DEFAULT_DAEMON_PATH : absPath('daemonPath', c.daemonPath),
    cache: normaliseCache(c.cache),
    threadPoolSize: c.threadPoolSize === undefined ? 1 : int('threadPoolSize', c.threadPoolSize, 0, 1024),
    sandbox: sandbox as SandboxMode,
    xattr: bool('xattr', c.xattr, false),
    announceSubmounts: bool('announceSubmounts', c.announceSubmounts, false),
    extraArgs: [...extraArgs],
    queueSize,
    tag,
    root: c.root === undefined ? DEFAULT_ROOT : absPath('root', c.root),
    socketPath: c.socketPath === undefined ? undefined : absPath('socketPath', c.socketPath),
    socketOwner,
    startTimeoutMs: c.startTimeoutMs === undefined ? 5000 : int('startTimeoutMs', c.startTimeoutMs, 1, 600_000),
    stopGraceMs: c.stopGraceMs === undefined ? 2000 : int('stopGraceMs', c.stopGraceMs, 0, 600_000),
    restart,
    pdeathsig: bool('pdeathsig', c.pdeathsig, true),
    volumeRoots: volumeRoots.map((p, i) => absPath(`volumeRoots[${i}]`, p)),
    rwShareReachable: reachable,
    dropCaps: [...dropCaps],
  };
}
