import { accessSync, constants as fsc, statSync } from 'node:fs';
import { KataError } from '../host/errors.js';
import { run } from '../host/exec.js';
import type { CacheMode, SandboxMode } from './config.js';

/**
 * Which virtiofsd a binary is: the C daemon of QEMU (<= 7.2, `-o source=`) or the Rust daemon
 * (`--shared-dir`). Detected from its --help and --version output, once per binary (the answer is
 * kept while the file's inode, size and mtime stay the same).
 */
export type FlavorKind = 'c' | 'rust';

export interface Flavor {
  kind: FlavorKind;
  /** Version as the binary prints it, e.g. "7.2.22" or "1.10.1" ("" if unknown). */
  version: string;
  /** Cache modes this binary accepts, in normalised spelling. */
  cacheModes: CacheMode[];
  sandboxModes: SandboxMode[];
}

/** Decide the flavor from help and version texts; undefined when neither daemon's text matches. */
export function flavorFromText(help: string, version: string): Flavor | undefined {
  const text = `${help}\n${version}`;
  if (/--shared-dir\b/.test(text)) {
    const m = /virtiofsd\s+v?(\d+\.\d+(?:\.\d+)?)/.exec(version) ?? /virtiofsd\s+v?(\d+\.\d+(?:\.\d+)?)/.exec(help);
    const cacheModes: CacheMode[] = ['auto', 'always', 'never'];
    if (/\bmetadata\b/.test(help)) cacheModes.push('metadata');
    const sandboxModes: SandboxMode[] = ['namespace', 'chroot'];
    if (/--sandbox\b/.test(help) && /\bnone\b/.test(help)) sandboxModes.push('none');
    return { kind: 'rust', version: m?.[1] ?? '', cacheModes, sandboxModes };
  }
  if (/-o\s+source=/.test(text) || /\bsource=PATH\b/.test(text)) {
    const m = /virtiofsd version (\S+)/.exec(version);
    const cacheModes: CacheMode[] = ['auto', 'always', 'never'];
    // The C help lists its modes as `could be one of "auto, always, none"`; take them from there when present.
    const listed = /cache=<mode>[^"]*"([^"]+)"/.exec(help);
    if (listed?.[1]?.includes('metadata')) cacheModes.push('metadata');
    return { kind: 'c', version: m?.[1] ?? '', cacheModes, sandboxModes: ['namespace', 'chroot'] };
  }
  return undefined;
}

const cache = new Map<string, { key: string; flavor: Promise<Flavor> }>();

/** Forget cached detections (tests). */
export function clearFlavorCache(): void {
  cache.clear();
}

/**
 * The flavor of the daemon binary at path. Throws E_CONFIG naming `virtiofs.daemonPath` when the
 * binary is missing, not executable, or not a virtiofsd.
 */
export async function detectFlavor(path: string): Promise<Flavor> {
  let key: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    accessSync(path, fsc.X_OK);
    key = `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (e) {
    throw new KataError(
      'E_CONFIG',
      `virtiofs.daemonPath = ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message} (install qemu-system-x86 for the C virtiofsd or the virtiofsd package for the Rust one, or fix the path)`,
      { key: 'virtiofs.daemonPath', path },
    );
  }
  const hit = cache.get(path);
  if (hit && hit.key === key) return hit.flavor;
  const flavor = (async () => {
    const [h, v] = await Promise.all([
      run(path, ['--help'], { reject: false, timeoutMs: 10_000 }),
      run(path, ['--version'], { reject: false, timeoutMs: 10_000 }),
    ]);
    const f = flavorFromText(h.stdout + h.stderr, v.stdout + v.stderr);
    if (!f) {
      throw new KataError(
        'E_CONFIG',
        `virtiofs.daemonPath = ${path} does not look like virtiofsd (its --help names neither -o source= nor --shared-dir)`,
        { key: 'virtiofs.daemonPath', path },
      );
    }
    return f;
  })();
  const entry = { key, flavor };
  cache.set(path, entry);
  flavor.catch(() => {
    if (cache.get(path) === entry) cache.delete(path);
  });
  return flavor;
}
