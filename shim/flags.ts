/**
 * The shim's command line as containerd builds it (runtime/v2/shim/util.go): Go `flag` style,
 * single dash, a value as the next argument, flags before the action word:
 *
 *   <shim> -namespace NS -address A -publish-binary B -id ID [-debug] start
 *   <shim> -namespace NS -address A -publish-binary B -id ID -bundle DIR delete
 *   <shim> -namespace NS -address A -id ID -socket PATH            (our daemon, started by `start`)
 */
import { KataError } from '../host/errors.js';

export interface ShimFlags {
  namespace: string;
  /** containerd's gRPC address (the ttRPC one is $TTRPC_ADDRESS, or this + ".ttrpc"). */
  address: string;
  publishBinary?: string;
  id: string;
  debug: boolean;
  bundle?: string;
  /** The daemon's listening socket (set by `start` for the daemon it spawns). */
  socket?: string;
  action?: 'start' | 'delete';
}

const VALUE_FLAGS = new Set(['namespace', 'address', 'publish-binary', 'id', 'bundle', 'socket']);
const BOOL_FLAGS = new Set(['debug', 'v']);

export function parseShimFlags(argv: readonly string[]): ShimFlags {
  const v: Record<string, string> = {};
  let debug = false;
  let action: ShimFlags['action'];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === 'start' || a === 'delete') {
      action = a;
      continue;
    }
    const m = /^--?([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m)
      throw new KataError('E_INVALID_ARGUMENT', `shim: unexpected argument "${a}" (usage: -namespace NS -address A -id ID start|delete)`);
    const name = m[1]!;
    if (BOOL_FLAGS.has(name)) {
      if (name === 'debug') debug = m[2] === undefined || m[2] === 'true';
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new KataError('E_INVALID_ARGUMENT', `shim: unknown flag -${name}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new KataError('E_INVALID_ARGUMENT', `shim: flag -${name} needs a value`);
    v[name] = value;
  }
  if (!v.namespace || !v.id) throw new KataError('E_INVALID_ARGUMENT', 'shim: -namespace and -id are required');
  return {
    namespace: v.namespace,
    address: v.address ?? '',
    ...(v['publish-binary'] ? { publishBinary: v['publish-binary'] } : {}),
    id: v.id,
    debug,
    ...(v.bundle ? { bundle: v.bundle } : {}),
    ...(v.socket ? { socket: v.socket } : {}),
    ...(action ? { action } : {}),
  };
}

/** The flags to give the daemon (no action word; its socket). */
export function daemonArgs(f: ShimFlags, socket: string): string[] {
  return [
    '-namespace',
    f.namespace,
    '-address',
    f.address,
    ...(f.publishBinary ? ['-publish-binary', f.publishBinary] : []),
    '-id',
    f.id,
    ...(f.debug ? ['-debug'] : []),
    '-socket',
    socket,
  ];
}
