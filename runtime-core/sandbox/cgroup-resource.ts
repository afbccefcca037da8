/**
 * The sandbox's host cgroup, as Kata's `sandbox_cgroup_only`: before anything of the sandbox is
 * started, its supervisor (the containerd shim, or the CLI's supervisor) joins a cgroup at the
 * pod's path in every mounted hierarchy, so virtiofsd, QEMU and every helper it starts are born
 * there and the pod's limits (set by kubelet on the cgroup parent) cover the VM. With
 * `sandbox_cgroup_only = false` the path is Kata's overhead cgroup `/kata_overhead/<id>` instead
 * (outside the pod; Kata then moves only the vCPU threads into the pod's cgroup, which is not done here).
 *
 * Where the host does not allow it (a hierarchy mounted read-only, as in most containers; no
 * cgroup mounted; a cgroup2 parent that delegates nothing), that hierarchy is skipped with a
 * warning naming it and the reason, and the sandbox runs outside it: placement never fails a
 * sandbox. Teardown moves what is still in the cgroup (the supervisor and its helpers) back to
 * where each process came from and removes exactly the directories that were made.
 */
import { join } from 'node:path';
import { cgroupfsPath, cgroupHierarchies, cgroupOf, cgroupProcs, joinCgroup, makeCgroup, removeCgroups } from '../../host/cgroups.js';
import { KataError } from '../../host/errors.js';
import type { Attached, ResourcePlugin } from '../../host/plugin.js';

export interface CgroupConfig {
  /** The sandbox's OCI cgroupsPath (cgroupfs, systemd `slice:prefix:name`, or relative). */
  path: string;
  /** The process that joins: the sandbox's supervisor. */
  pid: number;
}

export interface CgroupResources {
  path: string;
  pid: number;
  /** Per hierarchy joined: the cgroup, the directories that were made (outermost first), the supervisor's cgroup before. */
  joined: { mount: string; dir: string; created: string[]; origin: string }[];
  /** Hierarchies the host did not let the sandbox use, and why. */
  skipped: { mount: string; why: string }[];
}

/** Move whatever is still in `dir` back to `origin` (or the hierarchy's root when that is gone). */
function emptyOut(mount: string, dir: string, origin: string): void {
  for (const pid of cgroupProcs(dir)) {
    for (const to of [join(mount, origin), mount]) {
      try {
        joinCgroup(to, pid);
        break;
      } catch {
        /* try the root */
      }
    }
  }
}

async function undo(attached: Attached<CgroupResources>): Promise<void> {
  const problems: string[] = [];
  for (const j of [...attached.resources.joined].reverse()) {
    emptyOut(j.mount, j.dir, j.origin);
    problems.push(...(await removeCgroups(j.created)));
  }
  if (problems.length > 0)
    throw new KataError('E_STATE', `host cgroups of the sandbox could not be removed: ${problems.join('; ')}`, { problems });
}

export const cgroupPlugin: ResourcePlugin<'cgroup', CgroupConfig, CgroupResources> = {
  kind: 'cgroup',
  async attach(ctx, config) {
    const res: CgroupResources = { path: config.path, pid: config.pid, joined: [], skipped: [] };
    const hierarchies = cgroupHierarchies();
    if (hierarchies.length === 0) res.skipped.push({ mount: '/sys/fs/cgroup', why: 'no cgroup hierarchy is mounted' });
    for (const h of hierarchies) {
      const origin = cgroupOf(config.pid, h);
      if (origin === undefined) {
        res.skipped.push({ mount: h.mount, why: `process ${config.pid} is not in this hierarchy` });
        continue;
      }
      let made: { dir: string; created: string[] } | undefined;
      try {
        made = makeCgroup(h, cgroupfsPath(config.path, origin));
        joinCgroup(made.dir, config.pid);
        res.joined.push({ mount: h.mount, dir: made.dir, created: made.created, origin });
      } catch (e) {
        if (made) await removeCgroups(made.created);
        const err = e as NodeJS.ErrnoException;
        res.skipped.push({ mount: h.mount, why: `${err.code ?? 'error'}: ${err.message}` });
      }
    }
    for (const s of res.skipped)
      ctx.log.warn(
        { cgroup: config.path, hierarchy: s.mount, why: s.why },
        `the sandbox is not placed in cgroup ${config.path} of ${s.mount} (the host does not allow it: ${s.why}); the VM runs outside the pod's limits there`,
      );
    ctx.log.info({ cgroup: config.path, hierarchies: res.joined.map((j) => j.mount) }, 'sandbox supervisor joined its cgroup');
    return { kind: 'cgroup', resources: res, devices: [], guest: {} };
  },
  detach: (_ctx, attached) => undo(attached),
  // Only the record is needed (the processes left in it are moved back to where they came from).
  recover: (_ctx, attached) => undo(attached),
  /** An attach interrupted before its record: the sandbox's own leaf is removed where it is empty (its parents are not known to be ours). */
  async sweep(_ctx, config) {
    for (const h of cgroupHierarchies()) {
      const origin = cgroupOf(process.pid, h) ?? '/';
      const dir = join(h.mount, cgroupfsPath(config.path, origin));
      if (cgroupProcs(dir).length === 0) await removeCgroups([dir], 0);
    }
  },
};

/** The cgroup path a sandbox's supervisor joins: the pod's (sandbox_cgroup_only) or Kata's overhead cgroup. */
export function sandboxCgroupPath(podPath: string, sandboxId: string, sandboxCgroupOnly: boolean): string {
  return sandboxCgroupOnly ? podPath : `/kata_overhead/${sandboxId}`;
}
