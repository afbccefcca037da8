import { readFileSync, readlinkSync, statSync } from 'node:fs';
import type { BatchOutcome, CoprocessNetlink, Netlink } from '../host/netlink.js';
import type { NetnsRef } from '../host/netns.js';

/**
 * DEL's `ip link del dev TAP`, answered when the tap has left the namespace rather than when the
 * kernel has finished freeing it.
 *
 * Deleting a net device unlists it at once (it disappears from the namespace, its name is free,
 * RTM_DELLINK is sent: about 1 ms), then the deleting process waits in the kernel for an RCU
 * barrier and for the last references to go (netdev_run_todo: 15-30 ms here) before netlink
 * acknowledges. Nothing can fail or be undone after the unlisting; the wait only frees memory.
 * So for DEL, a `link del` line counts as done once the device is absent from the namespace, as
 * `/proc/<helper>/net/dev` shows it: the `ip` helper runs inside that namespace (checked by the
 * inode of /proc/<helper>/ns/net), so no other process is needed to look. The helper itself goes
 * on to its acknowledgement and exits after the plugin has.
 *
 * The first look already comes after the line was written to the helper, and it usually finds the
 * device gone: the unlisting takes well under a millisecond. Absent then counts as deleted too (by
 * this line, or before it: the same for DEL, whose teardown takes "Cannot find device" as gone).
 * Without a helper the answer is the kernel's, as without this wrapper; while the device is still
 * listed (or the helper not yet in the namespace), whichever comes first decides. Used for DEL
 * only, where "deleted" and "already gone" mean the same; ADD's rollback (scratchUndo) needs to
 * tell them apart and keeps the kernel's answer.
 */
const LINK_DEL = /^link del dev (\S+)$/;
const POLL_MS = 1;

function devicesOf(pid: number): Set<string> | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/net/dev`, 'latin1');
    const names = new Set<string>();
    for (const line of text.split('\n').slice(2)) {
      const i = line.indexOf(':');
      if (i > 0) names.add(line.slice(0, i).trim());
    }
    return names;
  } catch {
    return undefined;
  }
}

/** The helper runs in ns: /proc/<pid>/ns/net is net:[<inode of the namespace file>]. */
function inNamespace(pid: number, ns: NetnsRef): boolean {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`) === `net:[${statSync(ns.path).ino}]`;
  } catch {
    return false;
  }
}

export function quickUnlink(inner: CoprocessNetlink): Netlink {
  return {
    batch: (tool, ns, lines) => {
      const names = lines.map((l) => LINK_DEL.exec(l)?.[1]);
      if (tool !== 'ip' || !ns || lines.length === 0 || names.some((n) => n === undefined)) return inner.batch(tool, ns, lines);
      const answer = inner.batch(tool, ns, lines);
      const pid = inner.helperPid('ip', ns);
      if (pid === undefined) return answer;
      return new Promise<BatchOutcome>((resolve, reject) => {
        let done = false;
        let timer: NodeJS.Timeout | undefined;
        const finish = (f: () => void): void => {
          if (done) return;
          done = true;
          if (timer) clearTimeout(timer);
          f();
        };
        answer.then(
          (o) => finish(() => resolve(o)),
          (e: unknown) => finish(() => reject(e)),
        );
        const look = (): void => {
          if (done) return;
          const devs = inNamespace(pid, ns) ? devicesOf(pid) : undefined;
          // Not readable (the helper not yet in the namespace, or gone): look again until the kernel answers.
          if (devs && !names.some((n) => devs.has(n!))) finish(() => resolve(lines.map(() => null)));
          else timer = setTimeout(look, POLL_MS);
        };
        look();
      });
    },
    json: (tool, ns, args) => inner.json(tool, ns, args),
    release: (ns) => inner.release(ns),
    close: () => inner.close(),
  };
}
