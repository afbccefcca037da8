import { helperArgv, type Tool } from '../../host/netlink.js';
import { preSentLines } from '../inherited-helpers.js';

/**
 * The first lines of the kata-cni executable (cni/build/bundle.mjs): a POSIX shell script that is
 * also JavaScript. The file starts with `#!/bin/sh`; the shell runs line 2 (for JavaScript a string
 * and a comment: `':' //; ...`) and the lines after it (`//`: the ends of its here-documents, for
 * JavaScript empty comments), then execs Node on the same file, which skips the #! line and runs
 * the rest. What this buys: the call's `ip` helper starts before Node does, so its start (exec,
 * dynamic linking, setns: about 3 ms) overlaps Node's own (about 25 ms) instead of following it,
 * and Node forks nothing for it (a fork of the 40 MiB Node process cost about 1.3 ms of the call;
 * dash's costs a fraction). For ADD, DEL and CHECK with an absolute CNI_NETNS the shell
 *  - makes three pipes for `ip` (here-documents are pipes in dash; opening /proc/self/fd/N of one
 *    gives its other end) and forks a subshell that execs `ip ... -batch -` on them: Node gets their
 *    other ends as fds 3 (ip's stdin), 4 (its stdout) and 5 (its stderr);
 *  - makes one pipe for `tc`'s stdin (Node's end: fd 7) and forks a subshell that makes tc's stdout
 *    and stderr pipes itself (its fds 3 and 4 are their other ends; fd 9 says both exist), waits
 *    for one line ("go") on its stdin, then execs `tc ... -batch -`. Node opens those two through
 *    /proc/<pid>/fd/ before it writes the line (cni/inherited-helpers.ts). The tc side waits
 *    because two helpers starting beside Node's start on two CPUs delay ip's answer (early-helpers.ts);
 *    dash cannot name fds above 9, too few for all six pipes in one process;
 *  - passes `KATA_CNI_EARLY="<its pid> <n|p> <ip pid> <tc pid>"` to Node (the pid is Node's own
 *    after the exec: an inherited stale value never matches; empty without helpers). Both helpers
 *    are then children of Node that Node never reaps, so their pids stay theirs while Node lives.
 * The helpers' command lines are helperArgv's (host/netlink.ts), with the namespace's name (`ip -n
 * NAME`, for /run/netns/NAME: "n") or path (`nsenter --net=PATH`: "p") decided as netnsRef
 * (host/netns.ts) decides, so that CoprocessNetlink adopts them.
 */
const NAME = '\u0000name';
const PATH = '\u0000path';
/** The word that names Node in the exec line; install.mjs puts an absolute path there. */
const NODE_WORD = 'node';
/**
 * Node's options: one V8 worker thread instead of four (a call never needs more; fewer threads to
 * start and to join at exit: about 0.5 ms). Not a V8 flag, so the code caches stay valid.
 */
const NODE_OPTIONS = '--v8-pool-size=1';

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

/** Line 2 and the here-document ends after it (see above); the caller writes `#!/bin/sh\n` first. */
export function shellBoot(node = NODE_WORD): string {
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
  const line = `':' //; ${mode}; e=; if [ -n "$m" ]; then ${ip}; ${tc}; fi; KATA_CNI_EARLY=$e exec ${node} ${NODE_OPTIONS} "$0" "$@"`;
  const heredocs = line.split('<<//').length - 1;
  return `${line}\n${'//\n'.repeat(heredocs)}`;
}
