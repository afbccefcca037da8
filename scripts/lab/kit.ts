/**
 * The kernel lab's boot files: Debian's linux-image-amd64 (the same package the guest kit boots),
 * unpacked once with every module and indexed by depmod, its vmlinux (PVH entry) and a small
 * initramfs (busybox, the few modules that mount the host's root: virtio-pci, virtio-fs, overlay,
 * virtio-console). The whole /lib/modules/<release> tree is kept in the cache; the guest
 * bind-mounts it from the host over virtio-fs, so `modprobe` there finds every module.
 *
 * Cached under /var/cache/kata-resources/lab (KATA_LAB_DIR moves it): <kernel hash>/ (kernel
 * package and version) holds the kernel and the module tree, built in a temporary directory beside
 * it and renamed; initrd-<hash>.cpio in it (busybox, the scripts) is rebuilt in a second when those
 * change. Builds are serialised by a lock file. The guest kit's own kernel tools (apt resolution,
 * unpacking, vmlinux extraction, module resolution, cpio) do the work.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KataError, isKataError } from '../../host/errors.js';
import { writeFileAtomic } from '../../host/atomic-file.js';
import { acquireLock } from '../../host/file-lock.js';
import { cpioNewc, type CpioEntry } from '../../runtime-core/guest-kit/cpio.js';
import {
  downloadKernel,
  extractKernel,
  extractVmlinux,
  hasPvhNote,
  resolveKernelPackage,
  type KernelPackage,
} from '../../runtime-core/guest-kit/kernel.js';
import { parseModulesBuiltin, parseModulesDep, resolveModules } from '../../runtime-core/guest-kit/modules.js';
import { INIT_APPLETS, LAB_INIT, LAB_STAGE2 } from './guest-scripts.js';

/** Bump when the build changes in a way the inputs below do not capture. */
const LAB_BUILD_VERSION = 1;
const DEFAULT_LAB_DIR = '/var/cache/kata-resources/lab';
const BUSYBOX = ['/usr/bin/busybox', '/bin/busybox'];
/** Modules the initramfs loads before the root exists (the rest come from the tree with modprobe). */
const BOOT_MODULES = ['virtio_pci', 'virtio_console', 'virtiofs', 'overlay'];
/** What apt and dpkg change when a new kernel package becomes the candidate. */
const APT_STATE = ['/var/lib/apt/lists', '/var/lib/dpkg/status', '/etc/apt/sources.list', '/etc/apt/sources.list.d'];

export interface LabKit {
  /** The kernel's cache directory. */
  dir: string;
  /** -kernel: the vmlinux (PVH), or the bzImage when the kernel has no PVH entry. */
  kernel: string;
  initrd: string;
  /** Host directory holding the module tree: `<modulesDir>/<release>/modules.dep`. */
  modulesDir: string;
  /** `uname -r` in the guest. */
  release: string;
  kernelPackage: string;
  kernelPackageVersion: string;
}

interface KernelRecord {
  release: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  kernelFile: string;
  builtAt: string;
}

function labDir(): string {
  return process.env.KATA_LAB_DIR ?? DEFAULT_LAB_DIR;
}

const sha256 = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function findBusybox(): Promise<string> {
  for (const p of BUSYBOX) if (await exists(p)) return p;
  throw new KataError('E_EXEC_NOT_FOUND', `static busybox not found (looked in ${BUSYBOX.join(', ')}); apt-get install busybox-static`);
}

const initInputs = (): string => `${LAB_INIT}\0${LAB_STAGE2}\0${BOOT_MODULES.join(',')}\0${INIT_APPLETS.join(',')}`;

/** Stats of what the hashes depend on: the same stats mean the same kit, without apt-cache or hashing. */
async function fingerprint(busybox: string): Promise<string> {
  const parts: unknown[] = [LAB_BUILD_VERSION, sha256(initInputs())];
  for (const p of [busybox, ...APT_STATE]) {
    const s = await stat(p).catch(() => undefined);
    parts.push([p, s?.size, s?.mtimeMs, s?.ino]);
  }
  return sha256(JSON.stringify(parts));
}

async function readKit(cacheDir: string, kernelHash: string, initrdHash: string): Promise<LabKit | undefined> {
  const dir = join(cacheDir, kernelHash);
  try {
    const r = JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as KernelRecord;
    const kit: LabKit = {
      dir,
      kernel: join(dir, r.kernelFile),
      initrd: join(dir, `initrd-${initrdHash}.cpio`),
      modulesDir: join(dir, 'modules'),
      release: r.release,
      kernelPackage: r.kernelPackage,
      kernelPackageVersion: r.kernelPackageVersion,
    };
    for (const f of [kit.kernel, kit.initrd, join(kit.modulesDir, r.release, 'modules.dep')]) await stat(f);
    return kit;
  } catch {
    return undefined;
  }
}

/**
 * The lab's boot files for the current inputs, built first when missing: the kernel (a download
 * and minutes, once per kernel package) under <lab dir>/<kernel hash>/, the initramfs (a second,
 * whenever the scripts or busybox change) beside it.
 */
export async function ensureLabKit(progress: (m: string) => void): Promise<LabKit> {
  const cacheDir = labDir();
  await mkdir(cacheDir, { recursive: true });
  const busybox = await findBusybox();
  const currentFile = join(cacheDir, 'current.json');
  const fp = await fingerprint(busybox);
  try {
    const cur = JSON.parse(await readFile(currentFile, 'utf8')) as { kernel: string; initrd: string; fingerprint: string };
    if (cur.fingerprint === fp) {
      const kit = await readKit(cacheDir, cur.kernel, cur.initrd);
      if (kit) return kit;
    }
  } catch {
    /* no record yet: the slow path */
  }
  const pkg = await resolveKernelPackage(progress);
  const kernelHash = sha256(JSON.stringify({ v: LAB_BUILD_VERSION, kernel: [pkg.name, pkg.version] })).slice(0, 20);
  const initrdHash = sha256(`${kernelHash}\0${await sha256File(busybox)}\0${initInputs()}`).slice(0, 20);
  let kit = await readKit(cacheDir, kernelHash, initrdHash);
  if (!kit) {
    const lock = await acquireLock(join(cacheDir, `.lock-${kernelHash}`), { waitMs: 3_600_000, purpose: 'kernel lab build' });
    try {
      const dir = join(cacheDir, kernelHash);
      if (!(await exists(join(dir, 'kernel.json')))) await buildKernel(cacheDir, kernelHash, pkg, progress);
      await buildInitrd(dir, initrdHash, busybox);
      kit = await readKit(cacheDir, kernelHash, initrdHash);
      if (!kit) throw new KataError('E_STATE', `kernel lab ${dir} is incomplete after the build`);
    } finally {
      await lock.release();
    }
    await prune(cacheDir, kernelHash, initrdHash).catch(() => {});
  }
  await writeFileAtomic(currentFile, JSON.stringify({ kernel: kernelHash, initrd: initrdHash, fingerprint: fp }), 0o644);
  return kit;
}

async function buildKernel(cacheDir: string, hash: string, pkg: KernelPackage, progress: (m: string) => void): Promise<void> {
  progress(`unpacking ${pkg.name} ${pkg.version} for the kernel lab (every module); this happens once per kernel`);
  const out = join(cacheDir, `.build-${hash}-${process.pid}`);
  await rm(out, { recursive: true, force: true });
  await mkdir(join(out, 'work'), { recursive: true });
  try {
    const deb = await downloadKernel(pkg, join(out, 'work'), progress);
    const kroot = join(out, 'work', 'kernel');
    await extractKernel(deb, kroot, pkg.release, progress);
    await rm(deb, { force: true });
    const config = await readFile(join(kroot, 'boot', `config-${pkg.release}`), 'utf8').catch(() => '');
    const vmlinuz = join(kroot, 'boot', `vmlinuz-${pkg.release}`);
    let kernelFile = 'vmlinuz';
    if (/^CONFIG_PVH=y$/m.test(config)) {
      await extractVmlinux(vmlinuz, join(out, 'vmlinux'), progress);
      if (await hasPvhNote(join(out, 'vmlinux'))) kernelFile = 'vmlinux';
      else await rm(join(out, 'vmlinux'), { force: true });
    }
    if (kernelFile === 'vmlinuz') await copyFile(vmlinuz, join(out, kernelFile));
    await mkdir(join(out, 'modules'));
    await rename(join(kroot, 'lib', 'modules', pkg.release), join(out, 'modules', pkg.release));
    await rm(join(out, 'work'), { recursive: true, force: true });
    const record: KernelRecord = {
      release: pkg.release,
      kernelPackage: pkg.name,
      kernelPackageVersion: pkg.version,
      kernelFile,
      builtAt: new Date().toISOString(),
    };
    await writeFile(join(out, 'kernel.json'), JSON.stringify(record, null, 2));
    await rm(join(cacheDir, hash), { recursive: true, force: true });
    await rename(out, join(cacheDir, hash));
  } catch (e) {
    await rm(out, { recursive: true, force: true }).catch(() => {});
    throw isKataError(e) ? e : new KataError('E_INTERNAL', `kernel lab build failed: ${(e as Error).message}`, {}, { cause: e });
  }
}

/** The initramfs: busybox, the boot modules (resolved from the kept tree), stage 1 as /init, stage 2. */
async function buildInitrd(dir: string, hash: string, busybox: string): Promise<void> {
  const r = JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as KernelRecord;
  const modDir = join(dir, 'modules', r.release);
  const resolved = resolveModules(
    BOOT_MODULES,
    parseModulesDep(await readFile(join(modDir, 'modules.dep'), 'utf8')),
    parseModulesBuiltin(await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '')),
  );
  const entries: CpioEntry[] = ['bin', 'dev', 'proc', 'sys', 'lib', 'lib/modules'].map((d) => ({ type: 'dir', path: d }));
  entries.push({ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  entries.push({ type: 'file', path: 'bin/busybox', data: await readFile(busybox), mode: 0o755 });
  for (const a of INIT_APPLETS) entries.push({ type: 'symlink', path: `bin/${a}`, target: 'busybox' });
  const names: string[] = [];
  for (const rel of resolved.load) {
    if (!rel.endsWith('.ko'))
      throw new KataError('E_UNSUPPORTED', `kernel module ${rel} is compressed; busybox insmod needs plain .ko files`);
    const base = rel.split('/').pop()!;
    names.push(base);
    entries.push({ type: 'file', path: `lib/modules/${base}`, data: await readFile(join(modDir, rel)) });
  }
  entries.push({ type: 'file', path: 'lib/modules/load-order', data: Buffer.from(`${names.join('\n')}\n`) });
  entries.push({ type: 'file', path: 'stage2', data: Buffer.from(LAB_STAGE2), mode: 0o755 });
  entries.push({ type: 'file', path: 'init', data: Buffer.from(LAB_INIT), mode: 0o755 });
  const file = join(dir, `initrd-${hash}.cpio`);
  await writeFile(`${file}.${process.pid}.tmp`, cpioNewc(entries));
  await rename(`${file}.${process.pid}.tmp`, file);
}

/** Remove build directories of builders that are gone, other kernels than the current one, and its older initramfs files. */
async function prune(cacheDir: string, kernelHash: string, initrdHash: string): Promise<void> {
  for (const e of await readdir(cacheDir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const m = /^\.build-[0-9a-f]+-(\d+)$/.exec(e.name);
    if ((m && !(await exists(`/proc/${m[1]}`))) || (!m && /^[0-9a-f]{20}$/.test(e.name) && e.name !== kernelHash))
      await rm(join(cacheDir, e.name), { recursive: true, force: true });
  }
  for (const f of await readdir(join(cacheDir, kernelHash))) {
    if (/^initrd-[0-9a-f]{20}\.cpio$/.test(f) && f !== `initrd-${initrdHash}.cpio`)
      await rm(join(cacheDir, kernelHash, f), { force: true });
  }
}
