/**
 * Which kernel modules the guest's initramfs loads, resolved against the kernel's modules.dep
 * (written by `depmod -b`), with the ones built into the kernel (modules.builtin) skipped.
 */
import { KataError } from '../../host/errors.js';

/**
 * What the default guest needs at boot. Soft dependencies are listed explicitly (ext4's crc32c:
 * modules.softdep asks for "crypto-crc32c", and under TCG only the generic implementation works).
 * virtio_rng: node blocks in getrandom() at start until the kernel's CRNG is seeded; without RDRAND
 * (QEMU's default TCG CPU has none) a virtio-rng device is what seeds it early.
 */
export const GUEST_MODULES: readonly string[] = [
  'virtio_pci',
  'virtio_blk',
  'virtio_console',
  'virtio_net',
  'virtio_rng',
  'crc32c_generic',
  'ext4',
  'virtiofs',
  'libnvdimm',
  'nfit',
  'nd_pmem',
  'virtio_scsi',
  'sd_mod',
  'af_packet',
];

/** Module name from a path or name: basename, no .ko[.xz|.zst|.gz], "-" as "_" (as the kernel does). */
export function moduleName(pathOrName: string): string {
  const base = pathOrName.split('/').pop() ?? pathOrName;
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

export interface ModulesDep {
  /** name -> { path relative to /lib/modules/<release>, dependency names } */
  modules: Map<string, { path: string; deps: string[] }>;
}

export function parseModulesDep(text: string): ModulesDep {
  const modules = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const path = line.slice(0, i).trim();
    const deps = line
      .slice(i + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(moduleName);
    modules.set(moduleName(path), { path, deps });
  }
  return { modules };
}

export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map(moduleName),
  );
}

export interface ResolvedModules {
  /** Paths (relative to the modules dir) in a valid load order: every module after its dependencies. */
  load: string[];
  /** Requested modules that are built into the kernel (nothing to load). */
  builtin: string[];
}

/** Resolve the wanted modules and all their dependencies into a load order. */
export function resolveModules(wanted: readonly string[], dep: ModulesDep, builtin: Set<string>): ResolvedModules {
  const order: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const builtinHit: string[] = [];
  const visit = (name: string, chain: string[]): void => {
    if (done.has(name)) return;
    const m = dep.modules.get(name);
    if (!m) {
      if (builtin.has(name)) {
        if (!builtinHit.includes(name)) builtinHit.push(name);
        done.add(name);
        return;
      }
      throw new KataError(
        'E_KERNEL_FEATURE',
        `kernel module ${name}${chain.length ? ` (needed by ${chain.join(' <- ')})` : ''} is neither in modules.dep nor built in; this kernel cannot run the default guest`,
        { module: name },
      );
    }
    if (visiting.has(name)) throw new KataError('E_INTERNAL', `module dependency cycle through ${[...chain, name].join(' -> ')}`);
    visiting.add(name);
    for (const d of m.deps) visit(d, [name, ...chain]);
    visiting.delete(name);
    done.add(name);
    order.push(m.path);
  };
  for (const w of wanted) visit(moduleName(w), []);
  return { load: order, builtin: builtinHit };
}
