/**
 * The guest-kit cache's housekeeping: each checkout's fast-path pointer
 * (current-<hash of the project root>.json) and the pruning of old kits and dead builds. Checkouts
 * of other sources share the cache dir but not their pointer, so they do not evict each other's
 * fast path, and a recent pointer keeps its kit from being pruned.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readProcStat } from '../../host/proc.js';
import { projectRoot } from './agent-bundle.js';

/** A build directory's pid still names a process (the builder may be alive: keep its directory). */
function pidAlive(pid: number): boolean {
  return readProcStat(pid) !== undefined;
}

/** A checkout's pointer younger than this keeps its kit from being pruned. */
const POINTER_KEEPS_KIT_MS = 7 * 24 * 3600 * 1000;

/** Kits that another checkout's recent fast-path pointer (current-*.json) names. */
async function pointedKits(cacheDir: string, names: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const n of names) {
    if (!/^current-[0-9a-f]{12}\.json$/.test(n)) continue;
    try {
      const p = join(cacheDir, n);
      if (Date.now() - (await stat(p)).mtimeMs > POINTER_KEEPS_KIT_MS) continue;
      out.add((JSON.parse(await readFile(p, 'utf8')) as { hash: string }).hash);
    } catch {
      /* unreadable or removed meanwhile: it protects nothing */
    }
  }
  return out;
}

/**
 * Remove what earlier builds left in the cache: build directories of builders that are gone, and
 * kits beyond the `keep` most recently built ones (never `current`, nor one that another checkout's
 * pointer of the last week names). A running VM keeps the files it
 * opened, so removing an old kit does not disturb it.
 */
export async function pruneGuestKits(cacheDir: string, current: string, keep = 3): Promise<string[]> {
  const removed: string[] = [];
  const entries = await readdir(cacheDir, { withFileTypes: true }).catch(() => []);
  const kits: string[] = [];
  const pointed = await pointedKits(
    cacheDir,
    entries.map((e) => e.name),
  );
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const m = /^\.build-[0-9a-f]+-(\d+)$/.exec(e.name);
    if (m) {
      if (!pidAlive(Number(m[1]))) {
        await rm(join(cacheDir, e.name), { recursive: true, force: true });
        removed.push(e.name);
      }
      continue;
    }
    if (!/^[0-9a-f]{20}$/.test(e.name) || e.name === current || pointed.has(e.name)) continue;
    kits.push(e.name);
  }
  removed.push(...(await removeAllButNewest(cacheDir, kits, 'kit.json', keep - 1)));
  removed.push(...(await pruneKernels(cacheDir, current, keep)));
  return removed;
}

/** Remove the directories `names` of cacheDir but the `keep` newest (by the mtime of their `record` file). */
async function removeAllButNewest(cacheDir: string, names: string[], record: string, keep: number): Promise<string[]> {
  const aged: { name: string; mtime: number }[] = [];
  for (const name of names) {
    const st = await stat(join(cacheDir, name, record)).catch(() => undefined);
    aged.push({ name, mtime: st?.mtimeMs ?? 0 });
  }
  aged.sort((a, b) => b.mtime - a.mtime);
  const removed: string[] = [];
  for (const k of aged.slice(Math.max(0, keep))) {
    await rm(join(cacheDir, k.name), { recursive: true, force: true });
    removed.push(k.name);
  }
  return removed;
}

/**
 * Built kernels (kernel-<hash>/, kernel-build.ts) beyond the `keep` most recent, never the one the
 * `current` kit was built with. A kit holds its own copy of the vmlinux, so removing a kernel only
 * means the next kit of those kernel inputs compiles it again.
 */
async function pruneKernels(cacheDir: string, current: string, keep: number): Promise<string[]> {
  let inUse: string | undefined;
  try {
    inUse = (JSON.parse(await readFile(join(cacheDir, current, 'kit.json'), 'utf8')) as { inputs?: { kernel?: { build?: string } } }).inputs
      ?.kernel?.build;
  } catch {
    /* no such kit (or not built from source): nothing to spare */
  }
  const kernels: string[] = [];
  for (const e of await readdir(cacheDir, { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory() && /^kernel-[0-9a-f]{16}$/.test(e.name) && e.name !== `kernel-${inUse}`) kernels.push(e.name);
  }
  return removeAllButNewest(cacheDir, kernels, 'kernel.json', keep - (inUse ? 1 : 0));
}

/**
 * The fast path's pointer to the last kit of this checkout (the agent bundle's sources are the
 * checkout's), one per kernel source (`built`, the default, or `debian`) so switching does not
 * evict the other's.
 */
export function currentPointerFile(cacheDir: string, kernelSource = 'built', root = projectRoot()): string {
  const key = kernelSource === 'built' ? root : `${root}\0${kernelSource}`;
  return join(cacheDir, `current-${createHash('sha256').update(key).digest('hex').slice(0, 12)}.json`);
}
