/**
 * The guest's own kernel: built from Debian's linux-source-6.1 (installed with apt-get; the tarball
 * is /usr/src/linux-source-6.1.tar.xz) with `make tinyconfig` plus the repository's fragment
 * (guest/kernel/kata-guest.config, in the spirit of Kata's kernel config fragments), everything
 * the guest needs built in, so the initramfs loads no modules. Only `make vmlinux`: QEMU boots the
 * uncompressed ELF through its PVH entry, so no bzImage is compressed.
 *
 * Cached apart from the kit (a new agent must not rebuild the kernel) under
 * <kit cache>/kernel-<hash>/ (vmlinux, config, kernel.json), the hash covering the source package
 * version, the fragment, the compiler and KERNEL_BUILD_VERSION. Built in a temporary directory,
 * copied into the cache under a temporary name and renamed; concurrent callers build once (lock).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KataError, isKataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';
import { acquireLock } from '../../host/file-lock.js';
import { projectRoot } from './agent-bundle.js';
import { APT_OPTS, aptUpdate, hasPvhNote } from './kernel.js';

/** Bump when the build steps change in a way the other inputs do not capture. */
const KERNEL_BUILD_VERSION = 1;
export const KERNEL_SOURCE_PACKAGE = 'linux-source-6.1';
/** Debian packages the build needs besides gcc and libc6-dev (the kit needs those anyway). */
const BUILD_PACKAGES = [KERNEL_SOURCE_PACKAGE, 'make', 'bc', 'flex', 'bison', 'libelf-dev', 'xz-utils'];

export function kernelFragmentPath(root = projectRoot()): string {
  return join(root, 'guest', 'kernel', 'kata-guest.config');
}

/** `CONFIG_X=v` lines of a .config or fragment ("# CONFIG_X is not set" and `=n` both read as "n"). */
export function parseKernelConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (set) out.set(set[1]!, set[2]!);
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line.trim());
    if (unset) out.set(unset[1]!, 'n');
  }
  return out;
}

/** Fragment options the final .config does not have as asked (kconfig drops what has unmet dependencies). */
export function unmetOptions(fragment: string, config: string): string[] {
  const have = parseKernelConfig(config);
  const bad: string[] = [];
  for (const [k, v] of parseKernelConfig(fragment)) {
    const got = have.get(k) ?? 'n';
    if (got !== v) bad.push(`${k}=${v} (got ${got})`);
  }
  return bad;
}

export interface KernelBuildInputs {
  buildVersion: number;
  sourcePackage: string;
  sourceVersion: string;
  fragment: string;
  compiler: string;
}

export interface BuiltKernel {
  dir: string;
  vmlinux: string;
  /** The kernel's .config. */
  config: string;
  /** `uname -r` in the guest. */
  release: string;
  sourceVersion: string;
  hash: string;
  outcome: 'built' | 'reused';
}

interface KernelRecord {
  hash: string;
  release: string;
  inputs: KernelBuildInputs;
  builtAt: string;
  buildMs: number;
}

async function installedVersion(pkg: string): Promise<string | undefined> {
  const r = await run('dpkg-query', ['-W', '-f=${Status}\t${Version}', pkg], { reject: false });
  const [status, version] = r.stdout.split('\t');
  return r.exitCode === 0 && status?.endsWith(' installed') && version ? version : undefined;
}

/** The installed source package's version, else the one apt would install (so the hash is known before installing). */
async function sourceVersion(): Promise<string> {
  const v = await installedVersion(KERNEL_SOURCE_PACKAGE);
  if (v) return v;
  const r = await run('apt-cache', ['policy', KERNEL_SOURCE_PACKAGE], { reject: false, timeoutMs: 60_000 });
  const cand = /Candidate:\s*(\S+)/.exec(r.stdout)?.[1];
  if (!cand || cand === '(none)')
    throw new KataError(
      'E_EXEC_NOT_FOUND',
      `apt knows no ${KERNEL_SOURCE_PACKAGE} (the guest kernel's source); run apt-get update, or set KATA_GUEST_KERNEL=debian to boot Debian's stock kernel`,
    );
  return cand;
}

async function compilerVersion(): Promise<string> {
  const r = await run('gcc', ['--version'], { reject: false }).catch(() => undefined);
  return r?.exitCode === 0 ? (r.stdout.split('\n')[0] ?? '') : 'none';
}

export async function kernelBuildInputs(): Promise<KernelBuildInputs> {
  return {
    buildVersion: KERNEL_BUILD_VERSION,
    sourcePackage: KERNEL_SOURCE_PACKAGE,
    sourceVersion: await sourceVersion(),
    fragment: await readFile(kernelFragmentPath(), 'utf8'),
    compiler: await compilerVersion(),
  };
}

export function kernelBuildHash(inputs: KernelBuildInputs): string {
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

async function readBuilt(cacheDir: string, hash: string): Promise<BuiltKernel | undefined> {
  const dir = join(cacheDir, `kernel-${hash}`);
  try {
    const r = JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as KernelRecord;
    await stat(join(dir, 'vmlinux'));
    return {
      dir,
      vmlinux: join(dir, 'vmlinux'),
      config: join(dir, 'config'),
      release: r.release,
      sourceVersion: r.inputs.sourceVersion,
      hash,
      outcome: 'reused',
    };
  } catch {
    return undefined;
  }
}

/** apt-get install what the build needs and is missing (once: the guest kit is built as root). */
async function installBuildPackages(progress: (m: string) => void): Promise<void> {
  const missing: string[] = [];
  for (const p of BUILD_PACKAGES) if (!(await installedVersion(p))) missing.push(p);
  if (!missing.length) return;
  progress(`apt-get install ${missing.join(' ')} (to build the guest kernel)`);
  const install = (): Promise<unknown> =>
    run('apt-get', [...APT_OPTS, 'install', '-y', '--no-install-recommends', ...missing], {
      timeoutMs: 1_800_000,
      env: { DEBIAN_FRONTEND: 'noninteractive' },
    });
  try {
    await install();
  } catch {
    await aptUpdate(progress);
    await install();
  }
}

/** Run make in the tree, reporting progress (objects compiled so far) every 30 s; rejects with the output's tail. */
function make(tree: string, args: string[], progress: (m: string) => void, what: string): Promise<void> {
  const env = { ...process.env, KBUILD_BUILD_USER: 'kata-resources', KBUILD_BUILD_HOST: 'guest-kit', KBUILD_BUILD_TIMESTAMP: '@0' };
  return new Promise((resolve, reject) => {
    const child = spawn('make', args, { cwd: tree, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    let objects = 0;
    const started = Date.now();
    const keep = (d: string): void => {
      tail = (tail + d).slice(-4000);
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      objects += (d.match(/^\s+CC\s/gm) ?? []).length;
      keep(d);
    });
    child.stderr.setEncoding('utf8').on('data', keep);
    const timer = setInterval(
      () => progress(`${what}: ${objects} objects compiled, ${Math.round((Date.now() - started) / 1000)} s`),
      30_000,
    );
    child.on('error', (e) => {
      clearInterval(timer);
      reject(new KataError('E_EXEC_NOT_FOUND', `make is not installed (${e.message}): apt-get install make`));
    });
    child.on('close', (code) => {
      clearInterval(timer);
      if (code === 0) resolve();
      else
        reject(
          new KataError(
            'E_EXEC',
            `make ${args.join(' ')} in ${tree} failed (exit ${code}): ${tail.trim().split('\n').slice(-15).join('\n')}`,
          ),
        );
    });
  });
}

async function buildKernel(cacheDir: string, hash: string, inputs: KernelBuildInputs, progress: (m: string) => void): Promise<void> {
  const started = Date.now();
  await installBuildPackages(progress);
  const tarball = `/usr/src/${KERNEL_SOURCE_PACKAGE}.tar.xz`;
  const work = await mkdtemp(join(tmpdir(), 'kr-guest-kernel-'));
  // The name pruneGuestKits recognises: a dead builder's directory is removed.
  const out = join(cacheDir, `.build-${hash}-${process.pid}`);
  try {
    progress(`unpacking ${tarball} (${KERNEL_SOURCE_PACKAGE} ${inputs.sourceVersion})`);
    await run('tar', ['-xJf', tarball, '-C', work], { timeoutMs: 900_000 });
    const top = (await readdir(work)).find((d) => d.startsWith('linux'));
    if (!top) throw new KataError('E_STATE', `${tarball} holds no linux-* directory`);
    const tree = join(work, top);
    await writeFile(join(tree, 'kata-guest.config'), inputs.fragment);
    progress('configuring: make tinyconfig, then the guest fragment (merge_config.sh)');
    await make(tree, ['-s', 'tinyconfig'], progress, 'tinyconfig');
    await run('scripts/kconfig/merge_config.sh', ['-m', '.config', 'kata-guest.config'], { cwd: tree, timeoutMs: 300_000 });
    await make(tree, ['-s', 'olddefconfig'], progress, 'olddefconfig');
    const config = await readFile(join(tree, '.config'), 'utf8');
    const unmet = unmetOptions(inputs.fragment, config);
    if (unmet.length)
      throw new KataError('E_KERNEL_FEATURE', `kconfig did not take these options of ${kernelFragmentPath()}: ${unmet.join(', ')}`);
    const jobs = String(availableParallelism());
    progress(`compiling the guest kernel (make -j${jobs} vmlinux); this takes minutes and happens once per source version and fragment`);
    await make(tree, [`-j${jobs}`, 'vmlinux'], progress, 'compiling');
    const vmlinux = join(tree, 'vmlinux');
    if (!(await hasPvhNote(vmlinux))) throw new KataError('E_KERNEL_FEATURE', `the built ${vmlinux} has no PVH entry note (CONFIG_PVH)`);
    const release = (await run('make', ['-s', 'kernelrelease'], { cwd: tree, timeoutMs: 120_000 })).stdout.trim();
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    await copyFile(vmlinux, join(out, 'vmlinux'));
    await writeFile(join(out, 'config'), config);
    const record: KernelRecord = { hash, release, inputs, builtAt: new Date().toISOString(), buildMs: Date.now() - started };
    await writeFile(join(out, 'kernel.json'), JSON.stringify(record, null, 2));
    const final = join(cacheDir, `kernel-${hash}`);
    await rm(final, { recursive: true, force: true });
    await rename(out, final);
    progress(`guest kernel ${release} built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${final}`);
  } catch (e) {
    await rm(out, { recursive: true, force: true }).catch(() => {});
    throw isKataError(e) ? e : new KataError('E_INTERNAL', `guest kernel build failed: ${(e as Error).message}`, {}, { cause: e });
  } finally {
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
}

/** The guest kernel for these inputs from the cache, built first if absent. */
export async function ensureBuiltKernel(
  cacheDir: string,
  inputs: KernelBuildInputs,
  progress: (m: string) => void = () => {},
): Promise<BuiltKernel> {
  const hash = kernelBuildHash(inputs);
  const cached = await readBuilt(cacheDir, hash);
  if (cached) return cached;
  await mkdir(cacheDir, { recursive: true });
  const held = await acquireLock(join(cacheDir, `.lock-kernel-${hash}`), {
    waitMs: 90 * 60 * 1000,
    purpose: 'guest kernel build',
    onWait: (o) => progress(`waiting for another guest kernel build (pid ${o?.pid ?? '?'})`),
  });
  try {
    const again = await readBuilt(cacheDir, hash);
    if (again) return again;
    await buildKernel(cacheDir, hash, inputs, progress);
    const built = await readBuilt(cacheDir, hash);
    if (!built) throw new KataError('E_STATE', `guest kernel kernel-${hash} is incomplete after the build`);
    return { ...built, outcome: 'built' };
  } finally {
    await held.release();
  }
}
