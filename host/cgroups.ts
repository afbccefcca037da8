/**
 * Host cgroups through cgroupfs, as runc's fs driver uses them: every mounted hierarchy (each
 * cgroup v1 hierarchy, e.g. this host's hybrid layout of cpu, cpuacct, memory, ... plus the
 * unified cgroup2 one; or a pure cgroup2 host), a cgroup made at a path in it (recording which
 * directories were new, so that exactly those are removed again), a process moved in or out, and
 * removal with a short wait for processes that are still exiting. No library: this is a few file
 * writes, and the one npm package for it wraps systemd's D-Bus API, which this host has no use for.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Hierarchy {
  /** Where it is mounted (e.g. /sys/fs/cgroup/memory). */
  mount: string;
  version: 1 | 2;
  /** v1: the controllers (and name=...) of the hierarchy, as /proc/PID/cgroup lists them. */
  controllers: string[];
}

const unescapeOctal = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** The cgroup hierarchies mounted in this mount namespace (one mount each; bind copies skipped). */
export function cgroupHierarchies(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): Hierarchy[] {
  const out: Hierarchy[] = [];
  const seen = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    const fstype = f[sep + 1];
    if ((fstype !== 'cgroup' && fstype !== 'cgroup2') || f[3] !== '/') continue;
    const dev = f[2]!;
    if (seen.has(dev)) continue;
    seen.add(dev);
    const controllers =
      fstype === 'cgroup'
        ? (f[sep + 3] ?? '')
            .split(',')
            .filter((o) => o !== 'rw' && o !== 'ro' && !o.startsWith('release_agent') && o !== 'clone_children' && !o.startsWith('xattr'))
        : [];
    out.push({ mount: unescapeOctal(f[4]!), version: fstype === 'cgroup' ? 1 : 2, controllers: controllers.sort() });
  }
  return out;
}

/** The cgroup path of `pid` in hierarchy `h` (from /proc/PID/cgroup), or undefined when the process is gone. */
export function cgroupOf(pid: number, h: Hierarchy): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  const want = h.controllers.join(',');
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (h.version === 2 ? m[1] === '0' && m[2] === '' : m[2]!.split(',').sort().join(',') === want) return m[3]!;
  }
  return undefined;
}

/**
 * An OCI `linux.cgroupsPath` as a cgroupfs path. The systemd form `slice:prefix:name` becomes
 * /a.slice/a-b.slice/<prefix>-<name>.scope (the layout systemd itself uses, as runc's fs fallback
 * computes it); a relative path is taken below `base` (runc: relative to the runtime's own cgroup).
 */
export function cgroupfsPath(cgroupsPath: string, base = '/'): string {
  const sd = /^([^/:]*):([^:]*):([^:]+)$/.exec(cgroupsPath);
  let path: string;
  if (sd) {
    const slice = sd[1] || '-.slice';
    const parts = slice === '-.slice' ? [] : slice.replace(/\.slice$/, '').split('-');
    const slices = parts.map((_p, i) => `${parts.slice(0, i + 1).join('-')}.slice`);
    path = `/${[...slices, `${sd[2] ? `${sd[2]}-` : ''}${sd[3]}.scope`].join('/')}`;
  } else path = cgroupsPath.startsWith('/') ? cgroupsPath : `${base.replace(/\/$/, '')}/${cgroupsPath}`;
  const clean = path.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  return `/${clean.join('/')}`;
}

/** A new v1 cpuset cgroup has no CPUs or memory nodes: give it its parent's, or no process may join. */
function initCpuset(dir: string): void {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const own = join(dir, f);
    if (!existsSync(own) || readFileSync(own, 'utf8').trim() !== '') continue;
    writeFileSync(own, readFileSync(join(dir, '..', f), 'utf8').trim());
  }
}

/**
 * Make `path` in `h` (mkdir -p), returning the directories that are new, outermost first. A parent
 * removed meanwhile by another sandbox's cleanup (an empty shared parent) is made again.
 */
export function makeCgroup(h: Hierarchy, path: string): { dir: string; created: string[] } {
  const parts = path.split('/').filter(Boolean);
  for (let attempt = 0; ; attempt++) {
    const created: string[] = [];
    try {
      let dir = h.mount;
      for (const p of parts) {
        dir = join(dir, p);
        try {
          mkdirSync(dir);
          created.push(dir);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        if (h.version === 1 && h.controllers.includes('cpuset')) initCpuset(dir);
      }
      return { dir, created };
    } catch (e) {
      for (const d of created.reverse()) {
        try {
          rmdirSync(d);
        } catch {
          /* busy: left */
        }
      }
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw e;
    }
  }
}

/** Move a process (every thread of it) into the cgroup at `dir`. */
export function joinCgroup(dir: string, pid: number): void {
  writeFileSync(join(dir, 'cgroup.procs'), String(pid));
}

/** The processes in the cgroup at `dir` (empty when it is gone). */
export function cgroupProcs(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function hasChildCgroup(dir: string): boolean {
  try {
    return readdirSync(dir, { withFileTypes: true }).some((e) => e.isDirectory());
  } catch {
    return false;
  }
}

/**
 * Remove the given directories (outermost first, as makeCgroup returns them), innermost first, each
 * once it is empty: a process that was just killed leaves its cgroup a moment later (EBUSY until
 * then). A directory that still holds another cgroup (a parent another sandbox uses too) is left,
 * and so is everything above it; that is not a problem. Gone is fine. Returns what stayed that should not.
 */
export async function removeCgroups(dirs: readonly string[], waitMs = 3000): Promise<string[]> {
  const end = Date.now() + waitMs;
  for (const d of [...dirs].reverse()) {
    for (;;) {
      try {
        rmdirSync(d);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code === 'EBUSY' && hasChildCgroup(d)) return [];
        if (code === 'EBUSY' && Date.now() < end) {
          await sleep(50);
          continue;
        }
        const procs = cgroupProcs(d);
        return [`${d} (${code}${procs.length > 0 ? `; processes ${procs.join(', ')} still in it` : ''})`];
      }
    }
  }
  return [];
}
