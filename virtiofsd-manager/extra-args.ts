import type { Flavor } from './flavor.js';

/**
 * Kata's `virtio_fs_extra_args` are written for the Rust virtiofsd (Kata's default is
 * `["--thread-pool-size=1", "--announce-submounts"]`); the C daemon of QEMU 7.2 refuses unknown
 * options and exits. For the C daemon each Rust option is spelled the C way where there is one
 * (`--announce-submounts` -> `-o announce_submounts`), dropped with a note where there is none or
 * where the runtime sets it itself; options the C daemon knows pass as they are. For the Rust
 * daemon the arguments pass verbatim.
 */

export interface TranslatedArgs {
  args: string[];
  /** One line per argument that was respelled or dropped. */
  notes: string[];
}

/** Rust flags with a C `-o` option of the same meaning. */
const TO_C_OPTION: Record<string, string> = {
  '--announce-submounts': 'announce_submounts',
  '--xattr': 'xattr',
  '--posix-acl': 'posix_acl',
  '--allow-direct-io': 'allow_direct_io',
  '--killpriv-v2': 'killpriv_v2',
  '--no-killpriv-v2': 'no_killpriv_v2',
  '--writeback': 'writeback',
};
/** Long options the C daemon takes as they are (with =VALUE). */
const C_LONG = new Set(['--thread-pool-size', '--rlimit-nofile', '--syslog', '--socket-group']);
/** Set by the runtime from the configuration; a second copy would conflict. */
const RUNTIME_SETS: Record<string, string> = {
  '--socket-path': 'the runtime chooses the socket',
  '--fd': 'the runtime chooses the socket',
  '--shared-dir': 'the runtime chooses the shared directory',
  '--cache': 'set hypervisor.qemu.virtio_fs_cache instead',
  '--sandbox': 'the runtime sandboxes the daemon (namespace)',
  '--modcaps': 'the runtime drops CAP_MKNOD and CAP_SETFCAP itself',
};
/** Rust levels -> C's -o log_level. */
const C_LOG_LEVEL: Record<string, string> = { error: 'err', warn: 'warn', info: 'info', debug: 'debug', trace: 'debug', off: 'err' };
/** Rust options whose value is a separate word when not given with "=". */
const TAKES_VALUE = new Set([
  '--thread-pool-size',
  '--rlimit-nofile',
  '--log-level',
  '--cache',
  '--sandbox',
  '--socket-path',
  '--shared-dir',
  '--fd',
  '--modcaps',
  '--seccomp',
  '--inode-file-handles',
  '--xattrmap',
  '--uid-map',
  '--gid-map',
  '--translate-uid',
  '--translate-gid',
  '--socket-group',
  '--migration-mode',
  '--migration-on-error',
  '--security-label',
]);

export function translateExtraArgs(flavor: Flavor, extra: readonly string[]): TranslatedArgs {
  if (flavor.kind !== 'c') return { args: [...extra], notes: [] };
  const args: string[] = [];
  const notes: string[] = [];
  for (let i = 0; i < extra.length; i++) {
    const a = extra[i]!;
    if (!a.startsWith('--')) {
      args.push(a); // C options (-o ..., -d, -f) and their values
      if (a === '-o' && i + 1 < extra.length) args.push(extra[++i]!);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    let value = eq > 0 ? a.slice(eq + 1) : undefined;
    if (value === undefined && TAKES_VALUE.has(name) && i + 1 < extra.length && !extra[i + 1]!.startsWith('-')) value = extra[++i]!;
    const given = value === undefined ? name : `${name}=${value}`;
    if (TO_C_OPTION[name]) {
      args.push('-o', TO_C_OPTION[name]!);
      notes.push(`${given} is the Rust virtiofsd's spelling; passed to the C daemon as -o ${TO_C_OPTION[name]}`);
    } else if (C_LONG.has(name)) {
      args.push(value === undefined ? name : `${name}=${value}`);
    } else if (name === '--log-level' && value !== undefined && C_LOG_LEVEL[value]) {
      args.push('-o', `log_level=${C_LOG_LEVEL[value]}`);
      notes.push(`${given} is the Rust virtiofsd's spelling; passed to the C daemon as -o log_level=${C_LOG_LEVEL[value]}`);
    } else if (RUNTIME_SETS[name]) {
      notes.push(`${given} dropped: ${RUNTIME_SETS[name]}`);
    } else {
      notes.push(
        `${given} dropped: the C virtiofsd${flavor.version ? ` ${flavor.version}` : ''} has no such option (it is the Rust daemon's)`,
      );
    }
  }
  return { args, notes };
}
