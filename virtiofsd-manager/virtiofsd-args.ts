import { KataError } from '../host/errors.js';
import type { CacheMode, SandboxMode } from './config.js';
import { translateExtraArgs } from './extra-args.js';
import type { Flavor } from './flavor.js';

/**
 * The argument list for one virtiofsd, in the spelling of its flavor:
 *   C (QEMU 7.2):  --socket-path=SOCK -o source=DIR -o cache=auto|always|none -o sandbox=MODE [-o modcaps=-mknod:-setfcap] --thread-pool-size=N [-o xattr] [-o announce_submounts]
 *   Rust:          --socket-path SOCK --shared-dir DIR --cache auto|always|never|metadata --sandbox MODE [--modcaps=-mknod:-setfcap] --thread-pool-size N [--xattr] [--announce-submounts]
 * followed by the configured extra args (respelled for the C daemon: extra-args.ts).
 */
export interface VirtiofsdArgsInput {
  socketPath: string;
  sourceDir: string;
  cache: CacheMode;
  sandbox: SandboxMode;
  threadPoolSize: number | undefined;
  xattr: boolean;
  announceSubmounts: boolean;
  /** Capabilities to drop (names without CAP_, e.g. mknod); empty keeps the daemon's default set. */
  dropCaps: readonly string[];
  extraArgs: readonly string[];
}

function unsupported(key: string, value: string, flavor: Flavor, supported: readonly string[]): KataError {
  const who =
    flavor.kind === 'c'
      ? `the C virtiofsd${flavor.version ? ` ${flavor.version}` : ''}`
      : `the Rust virtiofsd${flavor.version ? ` ${flavor.version}` : ''}`;
  return new KataError('E_CONFIG', `virtiofs.${key} = ${value} is not supported by ${who} (supported: ${supported.join(', ')})`, {
    key: `virtiofs.${key}`,
    value,
    flavor: flavor.kind,
  });
}

/** Translate a normalised cache mode into the daemon's own word. */
function cacheWord(flavor: Flavor, cache: CacheMode): string {
  if (!flavor.cacheModes.includes(cache)) {
    throw unsupported(
      'cache',
      cache,
      flavor,
      flavor.cacheModes.map((m) => (m === 'never' ? 'never/none' : m)),
    );
  }
  return flavor.kind === 'c' && cache === 'never' ? 'none' : cache;
}

export function virtiofsdArgs(flavor: Flavor, o: VirtiofsdArgsInput): string[] {
  const cache = cacheWord(flavor, o.cache);
  if (!flavor.sandboxModes.includes(o.sandbox)) throw unsupported('sandbox', o.sandbox, flavor, flavor.sandboxModes);
  const args: string[] = [];
  const modcaps = o.dropCaps.map((c) => `-${c}`).join(':');
  if (flavor.kind === 'c') {
    args.push(`--socket-path=${o.socketPath}`, '-o', `source=${o.sourceDir}`, '-o', `cache=${cache}`, '-o', `sandbox=${o.sandbox}`);
    if (modcaps) args.push('-o', `modcaps=${modcaps}`);
    if (o.threadPoolSize !== undefined) args.push(`--thread-pool-size=${o.threadPoolSize}`);
    if (o.xattr) args.push('-o', 'xattr');
    if (o.announceSubmounts) args.push('-o', 'announce_submounts');
  } else {
    args.push('--socket-path', o.socketPath, '--shared-dir', o.sourceDir, '--cache', cache, '--sandbox', o.sandbox);
    if (modcaps) args.push(`--modcaps=${modcaps}`);
    if (o.threadPoolSize !== undefined) args.push('--thread-pool-size', String(o.threadPoolSize));
    if (o.xattr) args.push('--xattr');
    if (o.announceSubmounts) args.push('--announce-submounts');
  }
  args.push(...translateExtraArgs(flavor, o.extraArgs).args);
  return args;
}

/**
 * Files the daemon itself leaves next to its socket: the C daemon locks
 * /run/virtiofsd/<socket path with "/" as ".">.pid; the Rust daemon <socket path>.pid.
 */
export function daemonPidFiles(flavor: Flavor, socketPath: string): string[] {
  if (flavor.kind === 'c') return [`/run/virtiofsd/${socketPath.replace(/\//g, '.')}.pid`];
  return [`${socketPath}.pid`];
}
