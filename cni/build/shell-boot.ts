import { helperArgv, type Tool } from '../../host/netlink.js';
import { preSentLines } from '../inherited-helpers.js';
import { BOOT_END } from './payload.js';

/**
 * The first lines of the kata-cni executable (cni/build/bundle.mjs): a POSIX shell script whose
 * last here-document is Node's code. Line 2 decides what to start, starts it and execs Node on
 * `/dev/fd/8`: the boot (boot.ts), the here-document after the helpers' ones (their ends, `//`
 * lines, come first), with the executable's path after it on the command line; the plugin's code
 * follows the here-document's end as bytes (payload.ts; BOOT_ARGS for a NODE_OPTIONS with loaders). What this buys: the call's `ip` helper
 * starts before Node does, so its start (exec, dynamic linking, setns: about 3 ms) overlaps Node's
 * own (about 25 ms) instead of following it, and Node forks nothing for it (a fork of the 40 MiB
 * Node process cost about 1.3 ms of the call; dash's costs a fraction); and Node never parses the
 * payload as source. For ADD, DEL and CHECK with an absolute CNI_NETNS the shell
 *  - makes three pipes for `ip` (here-documents are pipes in dash; opening /proc/self/fd/N of one
 *    gives its other end) and forks a subshell that execs `ip ... -batch -` on them: Node gets their
 *    other ends as fds 3 (ip's stdin), 4 (its stdout) and 5 (its stderr); for ADD it first writes
 *    ip's first request there, the read of CNI_IFNAME (inherited-helpers.ts);
 *  - makes one pipe for `tc`'s stdin (Node's end: fd 7) and forks a subshell that makes tc's stdout
 *    and stderr pipes itself (its fds 3 and 4 are their other ends; fd 9 says both exist), waits
 *    for one line ("go") on its stdin, then execs `tc ... -batch -`. Node opens those two through
 *    /proc/<pid>/fd/ before it writes the line (cni/inherited-helpers.ts). The tc side waits
 *    because two helpers starting beside Node's start on two CPUs delay ip's answer (early-helpers.ts);
 *    dash cannot name fds above 9, too few for all six pipes in one process;
 *  - passes `KATA_CNI_EARLY="<its pid> <n|p> <ip pid> <tc pid> <r|>"` to Node (the pid is Node's own
 *    after the exec: an inherited stale value never matches; empty without helpers). Both helpers
 *    are then children of Node that Node never reaps, so their pids stay theirs while Node lives.
 * The helpers' command lines are helperArgv's (host/netlink.ts), with the namespace's name (`ip -n
 * NAME`, for /run/netns/NAME: "n") or path (`nsenter --net=PATH`: "p") decided as netnsRef
 * (host/netns.ts) decides, so that CoprocessNetlink adopts them.
 */
const NAME = '\u0000name';
const PATH = '\u0000path';
/** The word that names Node in the exec line as built; install.mjs puts an absolute path there. */
const NODE_WORD = 'node';
/**
 * Node's options: one V8 worker thread instead of four (a call never needs more; fewer threads to
 * start and to join at exit: about 0.5 ms). Not a V8 flag, so the code caches stay valid.
 */
const NODE_OPTIONS = '--v8-pool-size=1';

/**
 * How Node is given the boot, /dev/fd/8: a pipe, which can be read once. As the main script, with
 * its path as given (a pipe has no real path). But a NODE_OPTIONS with --import or a loader makes
 * Node read its main script twice (the ES module loader reads it, then the CommonJS one), and the
 * second read finds the pipe empty: then the boot is a --require preload instead, and the main
 * script /dev/null (about 1 ms more). No option here is a V8 flag: the code caches stay valid.
 */
const BOOT_ARGS =
  'b="--preserve-symlinks-main /dev/fd/8"; case $NODE_OPTIONS in *--import*|*--loader*|*--experimental-loader*) ' +
  'b="--preserve-symlinks --require /dev/fd/8 /dev/null";; esac';

const word = (s: string): string =>
  s === NAME
    ? '"${CNI_NETNS##*/}"'
    : s.startsWith('--net=') && s.slice(6) === PATH
      ? '"--net=$CNI_NETNS"'
      : /^[A-Za-z0-9_./=-]+$/.test(s)
        ? s
        : `'${s.replaceAll("'", `'\\''`)}'`;

/** `if name form; then exec ip -n NAME ...; fi; exec nsenter --net=PATH ip ...` for one tool. */
function execTool(tool: Tool): string {
  const byName = helperArgv(tool, { name: NAME, path: '' }, true);
  const byPath = helperArgv(tool, { path: PATH }, true);
  const line = ([file, args]: [string, string[]]): string => `exec ${[file, ...args].map(word).join(' ')}`;
  return `if [ "$m" = n ]; then ${line(byName)}; fi; ${line(byPath)}`;
}

/**
 * Line 2, the helpers' here-document ends and the boot's here-document (see above), which ends
 * the script; the caller writes `#!/bin/sh\n` first and the payload after it. `boot` is the
 * JavaScript Node runs (CommonJS), without a line that is BOOT_END; at most 4 KiB, else dash
 * forks a process to write it to its pipe.
 */
export function shellBoot(boot: string, node = NODE_WORD): string {
  if (boot.split('\n').includes(BOOT_END)) throw new Error(`the boot holds a line "${BOOT_END}", which would end its here-document`);
  return `${shellLines(node)}${boot.endsWith('\n') ? boot : `${boot}\n`}${BOOT_END}\n`;
}

/** Line 2 and the ends of the helpers' here-documents: the script up to the boot. */
export function shellLines(node = NODE_WORD): string {
  const mode =
    'm=; case $CNI_COMMAND in ADD|DEL|CHECK) case $CNI_NETNS in ' +
    '/var/run/netns/*/*|/run/netns/*/*) m=p;; /var/run/netns/?*|/run/netns/?*) m=n;; /*) m=p;; esac;; esac';
  // ADD: ip's first request, the pod link's read, written before ip is forked (the shell still
  // holds the pipe's read end, so the write cannot raise SIGPIPE), for a CNI_IFNAME that
  // validateIfName (host/names.ts) accepts; "r" in KATA_CNI_EARLY says it was.
  const read = preSentLines('$CNI_IFNAME')
    .map((l) => `"${l}"`)
    .join(' ');
  const preSend =
    'r=; if [ "$CNI_COMMAND" = ADD ]; then case $CNI_IFNAME in \'\'|.|..|*[!A-Za-z0-9_.@+-]*) ;; ' +
    `*) if [ \${#CNI_IFNAME} -le 15 ]; then printf '%s\\n' ${read} >&3 && r=r; fi;; esac; fi`;
  const ip =
    'exec 6<<// 3>/proc/self/fd/6 4<<// 7>/proc/self/fd/4 5<<// 8>/proc/self/fd/5; ' +
    `${preSend}; ` +
    `(exec <&6 >&7 2>&8 3>&- 4<&- 5<&- 6<&- 7>&- 8>&-; ${execTool('ip')}) & i=$!; ` +
    'exec 6<&- 7>&- 8>&-';
  const tc =
    'exec 6<<// 7>/proc/self/fd/6; ' +
    '(exec <&6 3>&- 4<&- 5<&- 6<&- 7>&-; exec 3<<// >/proc/self/fd/3 4<<// 2>/proc/self/fd/4 9<&0; ' +
    `read -r g && exec 3<&- 4<&- 9<&- && { ${execTool('tc')}; }) & ` +
    'e="$$ $m $i $! $r"; exec 6<&-';
  const line = `${mode}; e=; if [ -n "$m" ]; then ${ip}; ${tc}; fi; ${BOOT_ARGS}; KATA_CNI_EARLY=$e exec ${node} ${NODE_OPTIONS} $b "$0" "$@" 8<<'${BOOT_END}'`;
  const heredocs = line.split('<<//').length - 1;
  return `${line}\n${'//\n'.repeat(heredocs)}`;
}
