/**
 * The embedded default guest ("guest kit"): an uncompressed kernel, a small initramfs and an ext4
 * rootfs holding kata-init (PID 1), node and the guest agent. The kernel is built from Debian's
 * linux-source-6.1 with everything the guest needs built in (kernel-build.ts, cached on its own), so
 * it mounts the kit's rootfs itself and the sandbox boots without the initramfs (it is there for
 * images the kit did not build: it waits for the root device and says why it cannot mount it);
 * KATA_GUEST_KERNEL=debian (or opts.kernel) boots Debian's stock linux-image-amd64 instead, with the
 * modules the guest needs in the initramfs. Built once per set of inputs and cached under
 * /var/cache/kata-resources/guest-kit/<hash> (KATA_GUEST_KIT_DIR or opts.cacheDir to move it).
 *
 * The hash covers every input: the kernel (the built kernel's own hash, or the package and version
 * apt resolves), the busybox, node and ip binaries and their libraries (content hashes), the agent
 * bundle, kata-monitor's and kata-init's sources, the module list, the initramfs script and
 * GUEST_KIT_BUILD_VERSION. Computing it costs apt-cache calls and hashing ~100 MB, so a fingerprint
 * of the same inputs' file stats short-cuts the common case to a few stats. That pointer is kept per
 * checkout, and old kits are pruned (kit-cache.ts).
 *
 * Builds are atomic (built in a temporary directory in the cache, then renamed) and serialised by a
 * lock file, so concurrent callers build once.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, utimes, writeFile, copyFile, realpath } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KataError, isKataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';
import { acquireLock } from '../../host/file-lock.js';
import { rootLogger, type Logger } from '../../host/log.js';
import { type AgentFiles, agentSourceStats, bundleAgent, trainAgentCodeCache } from './agent-bundle.js';
import { INIT_SCRIPT, buildInitramfs } from './initramfs.js';
import { currentPointerFile, pruneGuestKits } from './kit-cache.js';
import { downloadKernel, extractKernel, extractVmlinux, hasPvhNote, resolveKernelPackage, type KernelPackage } from './kernel.js';
import {
  KERNEL_SOURCE_PACKAGE,
  ensureBuiltKernel,
  kernelBuildHash,
  kernelBuildInputs,
  kernelFragmentPath,
  type KernelBuildInputs,
} from './kernel-build.js';
import { GUEST_MODULES, parseModulesBuiltin, parseModulesDep, resolveModules, type ResolvedModules } from './modules.js';
import { INIT_SOURCES, buildInit, initInputsHash } from './init.js';
import { MONITOR_SOURCE, buildMonitor, monitorInputsHash } from './monitor.js';
import { makeRootfsImage, parseLdd, stageRootfs } from './rootfs.js';

/**
 * Bump when the build changes in a way the other inputs do not capture (4: the built kernel and the
 * agent's code cache; 5: kata-init in C, /dev/console in the image).
 */
const GUEST_KIT_BUILD_VERSION = 5;
const DEFAULT_GUEST_KIT_DIR = '/var/cache/kata-resources/guest-kit';

export interface GuestKit {
  /** Kernel to pass to -kernel: the uncompressed vmlinux (PVH entry), or the bzImage when it has no PVH note. */
  kernel: string;
  initrd: string;
  /**
   * The guest image in osbuilder's layout (dax-image.ts): an NVDIMM whose fsdax partition is
   * /dev/pmem0p1, or a read-only disk whose partition is /dev/vda1.
   */
  rootfs: string;
  /** `uname -r` in the guest. */
  kernelVersion: string;
  hash: string;
  dir: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  /** Whether `kernel` boots through the PVH entry. */
  pvh: boolean;
  /** Whether this call built the kit or found it in the cache (built by an earlier or concurrent caller). */
  outcome: 'built' | 'reused';
  /** Where the kernel comes from: built from linux-source (no modules), or Debian's stock image. */
  kernelSource: GuestKernelSource;
  /** Whether this call compiled the kernel or took it from the cache (a reused kit reuses its kernel). */
  kernelOutcome: 'built' | 'reused';
}

/** `built`: compiled from linux-source-6.1 with the guest fragment; `debian`: the stock linux-image-amd64 and its modules. */
export type GuestKernelSource = 'built' | 'debian';

export interface EnsureGuestKitOptions {
  cacheDir?: string;
  onProgress?: (msg: string) => void;
  log?: Logger;
  /** Default: KATA_GUEST_KERNEL, else `built`. */
  kernel?: GuestKernelSource;
}

export function guestKernelSource(opt?: GuestKernelSource): GuestKernelSource {
  const v = opt ?? process.env.KATA_GUEST_KERNEL ?? 'built';
  if (v !== 'built' && v !== 'debian')
    throw new KataError('E_CONFIG', `KATA_GUEST_KERNEL is ${JSON.stringify(v)}; use "built" (the default) or "debian"`);
  return v;
}

interface KitRecord {
  hash: string;
  kernelVersion: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  pvh: boolean;
  kernelSource: GuestKernelSource;
  files: { kernel: string; initrd: string; rootfs: string };
  inputs: Inputs;
  builtAt: string;
  buildMs: number;
}

interface Inputs {
  buildVersion: number;
  /** The stock package, or linux-source-6.1 with `build` the built kernel's hash. */
  kernel: { name: string; version: string; build?: string };
  binaries: Record<string, string>;
  libraries: Record<string, string>;
  agent: string;
  monitor: string;
  init: string;
  modules: readonly string[];
  scripts: string;
}

interface Tools {
  node: string;
  ip: string;
  busybox: string;
  runc: string;
  libs: string[];
}

export function guestKitDir(opts: { cacheDir?: string } = {}): string {
  return opts.cacheDir ?? process.env.KATA_GUEST_KIT_DIR ?? DEFAULT_GUEST_KIT_DIR;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function firstExisting(what: string, pkg: string, paths: string[]): Promise<string> {
  for (const p of paths) if (await exists(p)) return realpath(p);
  throw new KataError('E_EXEC_NOT_FOUND', `${what} not found (looked in ${paths.join(', ')}); install the Debian package ${pkg}`);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const sha256 = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

async function findTools(): Promise<Tools> {
  const node = await firstExisting('node', 'nodejs', ['/usr/bin/node', process.execPath]);
  const ip = await firstExisting('ip (iproute2)', 'iproute2', ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip']);
  const busybox = await firstExisting('static busybox', 'busybox-static', ['/usr/bin/busybox', '/bin/busybox']);
  const runc = await firstExisting('runc', 'runc', ['/usr/sbin/runc', '/usr/bin/runc']);
  const bb = await run('ldd', [busybox], { reject: false });
  if (!/not a dynamic executable|statically linked/.test(bb.stdout + bb.stderr)) {
    throw new KataError(
      'E_EXEC_NOT_FOUND',
      `${busybox} is dynamically linked; the initramfs needs a static one: apt-get install busybox-static`,
    );
  }
  const libs = new Set<string>();
  for (const b of [node, ip, runc]) for (const l of parseLdd((await run('ldd', [b])).stdout)) libs.add(l);
  return { node, ip, busybox, runc, libs: [...libs].sort() };
}

/** What the kit's kernel is made from: the stock package, or the source build's inputs. */
type KernelPlan = { source: 'debian'; pkg: KernelPackage } | { source: 'built'; build: KernelBuildInputs };

async function planKernel(source: GuestKernelSource, progress: (m: string) => void): Promise<KernelPlan> {
  return source === 'debian' ? { source, pkg: await resolveKernelPackage(progress) } : { source, build: await kernelBuildInputs() };
}

function kernelInput(plan: KernelPlan): Inputs['kernel'] {
  return plan.source === 'debian'
    ? { name: plan.pkg.name, version: plan.pkg.version }
    : { name: KERNEL_SOURCE_PACKAGE, version: plan.build.sourceVersion, build: kernelBuildHash(plan.build) };
}

async function computeInputs(tools: Tools, plan: KernelPlan, agent: AgentFiles): Promise<Inputs> {
  const binaries: Record<string, string> = {};
  for (const [k, p] of [
    ['node', tools.node],
    ['ip', tools.ip],
    ['busybox', tools.busybox],
    ['runc', tools.runc],
  ] as const)
    binaries[k] = await sha256File(p);
  const libraries: Record<string, string> = {};
  for (const l of tools.libs) libraries[l] = await sha256File(l);
  return {
    buildVersion: GUEST_KIT_BUILD_VERSION,
    kernel: kernelInput(plan),
    binaries,
    libraries,
    // The code cache is made from these and the node binary (above): no input of its own.
    agent: sha256(Buffer.concat([agent.agent, Buffer.from('\0'), agent.start])),
    monitor: await monitorInputsHash(),
    init: await initInputsHash(),
    modules: plan.source === 'debian' ? GUEST_MODULES : [],
    scripts: sha256(INIT_SCRIPT),
  };
}

function hashInputs(inputs: Inputs): string {
  return sha256(JSON.stringify(inputs)).slice(0, 20);
}

/** The cache key of the kit the current host would build (apt-cache, hashing, agent bundling: not free). */
export async function guestKitInputsHash(kernel?: GuestKernelSource): Promise<string> {
  const [tools, plan, agent] = await Promise.all([findTools(), planKernel(guestKernelSource(kernel), () => {}), bundleAgent()]);
  return hashInputs(await computeInputs(tools, plan, agent));
}

/** Stats of everything the full hash depends on, to recognise "nothing changed" cheaply. */
async function fingerprint(paths: string[], source: GuestKernelSource): Promise<string> {
  const parts: unknown[] = [GUEST_KIT_BUILD_VERSION, sha256(INIT_SCRIPT), GUEST_MODULES, source];
  for (const p of paths) {
    const s = await stat(p).catch(() => undefined);
    // Size and mtime, not the inode: the same files seen through an overlay (a private mount
    // namespace, as containerd's tests make) have other inodes.
    parts.push([p, s?.size, s?.mtimeMs]);
  }
  parts.push(await agentSourceStats());
  for (const src of [MONITOR_SOURCE, ...INIT_SOURCES]) {
    const m = await stat(src).catch(() => undefined);
    parts.push([src, m?.size, m?.mtimeMs]);
  }
  return sha256(JSON.stringify(parts));
}

const APT_STATE = ['/var/lib/apt/lists', '/var/lib/dpkg/status', '/etc/apt/sources.list', '/etc/apt/sources.list.d'];

function kitFromRecord(dir: string, r: KitRecord): GuestKit {
  return {
    kernel: join(dir, r.files.kernel),
    initrd: join(dir, r.files.initrd),
    rootfs: join(dir, r.files.rootfs),
    kernelVersion: r.kernelVersion,
    hash: r.hash,
    dir,
    kernelPackage: r.kernelPackage,
    kernelPackageVersion: r.kernelPackageVersion,
    pvh: r.pvh,
    outcome: 'reused',
    kernelSource: r.kernelSource ?? 'debian',
    kernelOutcome: 'reused',
  };
}

async function readKit(cacheDir: string, hash: string): Promise<GuestKit | undefined> {
  const dir = join(cacheDir, hash);
  try {
    const r = JSON.parse(await readFile(join(dir, 'kit.json'), 'utf8')) as KitRecord;
    const kit = kitFromRecord(dir, r);
    for (const f of [kit.kernel, kit.initrd, kit.rootfs]) if (!(await exists(f))) return undefined;
    return kit;
  } catch {
    return undefined;
  }
}

/** The kit this checkout's fast-path pointer names, when it is built (nothing is built or checked): what `kata-resources env` shows. */
export async function cachedGuestKit(opts: { cacheDir?: string } = {}): Promise<GuestKit | undefined> {
  const cacheDir = guestKitDir(opts);
  try {
    const cur = JSON.parse(await readFile(currentPointerFile(cacheDir, guestKernelSource()), 'utf8')) as { hash: string };
    return await readKit(cacheDir, cur.hash);
  } catch {
    return undefined;
  }
}

/** Builds of one kit take many minutes on a slow machine: wait for another builder that long. */
const BUILD_LOCK_WAIT_MS = 60 * 60 * 1000;

/** Return the cached kit for the current inputs, building it first if needed. */
export async function ensureGuestKit(opts: EnsureGuestKitOptions = {}): Promise<GuestKit> {
  const cacheDir = guestKitDir(opts);
  const log = (opts.log ?? rootLogger()).child({ subsystem: 'guest-kit' });
  const progress = (m: string): void => {
    log.info(m);
    opts.onProgress?.(m);
  };
  await mkdir(cacheDir, { recursive: true });
  const source = guestKernelSource(opts.kernel);
  const currentFile = currentPointerFile(cacheDir, source);

  // Fast path: same file stats as when the current kit was resolved.
  try {
    const cur = JSON.parse(await readFile(currentFile, 'utf8')) as { hash: string; fingerprint: string; paths: string[] };
    if (cur.fingerprint === (await fingerprint(cur.paths, source))) {
      const kit = await readKit(cacheDir, cur.hash);
      if (kit) {
        // A pointer in use stays young, so its kit is not pruned by other checkouts' builds.
        const t = new Date();
        await utimes(currentFile, t, t).catch(() => {});
        return kit;
      }
    }
  } catch {
    /* no or unreadable record: take the slow path */
  }

  const [tools, plan, agent] = await Promise.all([findTools(), planKernel(source, progress), bundleAgent()]);
  const inputs = await computeInputs(tools, plan, agent);
  const hash = hashInputs(inputs);
  const remember = async (): Promise<void> => {
    const paths = [tools.node, tools.ip, tools.busybox, tools.runc, ...tools.libs, ...APT_STATE, kernelFragmentPath()];
    const tmp = `${currentFile}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ hash, fingerprint: await fingerprint(paths, source), paths }));
    await rename(tmp, currentFile);
  };

  let kit = await readKit(cacheDir, hash);
  if (!kit) {
    const held = await acquireLock(join(cacheDir, `.lock-${hash}`), {
      waitMs: BUILD_LOCK_WAIT_MS,
      purpose: 'guest kit build',
      log,
      onWait: (o) => progress(`waiting for another guest kit build (pid ${o?.pid ?? '?'})`),
    });
    try {
      kit = await readKit(cacheDir, hash);
      if (!kit) {
        kit = await build(cacheDir, hash, inputs, tools, plan, agent, progress);
        const removed = await pruneGuestKits(cacheDir, hash).catch(() => []);
        if (removed.length) progress(`removed old guest kit files: ${removed.join(', ')}`);
      }
    } finally {
      await held.release();
    }
  }
  await remember();
  return kit;
}

async function build(
  cacheDir: string,
  hash: string,
  inputs: Inputs,
  tools: Tools,
  plan: KernelPlan,
  agent: AgentFiles,
  progress: (m: string) => void,
): Promise<GuestKit> {
  const started = Date.now();
  const k = kernelInput(plan);
  progress(`building the guest kit ${hash} (kernel ${k.name} ${k.version}${k.build ? `, build ${k.build}` : ''}); this happens once`);
  const out = join(cacheDir, `.build-${hash}-${process.pid}`);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'kr-guest-kit-'));
  try {
    const kernel =
      plan.source === 'built'
        ? await builtKernel(cacheDir, plan.build, out, tools.busybox, progress)
        : await stockKernel(plan.pkg, work, out, tools, progress);

    progress(
      'building the rootfs image (kata-init, node, guest agent, kata-monitor, ip, runc, busybox): osbuilder layout, ext4 by mkfs.ext4 -d',
    );
    const monitor = join(work, 'kata-monitor');
    const init = join(work, 'kata-init');
    await Promise.all([buildMonitor(monitor), buildInit(init)]);
    const stage = join(work, 'rootfs');
    const agentCodeCache = await trainAgentCodeCache(tools.node, agent, progress);
    await stageRootfs(stage, {
      node: tools.node,
      ip: tools.ip,
      busybox: tools.busybox,
      runc: tools.runc,
      monitor,
      init,
      agent,
      agentCodeCache,
    });
    const { imageMiB } = await makeRootfsImage(stage, join(out, 'rootfs.img'));

    const record: KitRecord = {
      hash,
      kernelVersion: kernel.release,
      kernelPackage: k.name,
      kernelPackageVersion: k.version,
      pvh: kernel.pvh,
      kernelSource: plan.source,
      files: { kernel: kernel.file, initrd: 'initrd.cpio', rootfs: 'rootfs.img' },
      inputs,
      builtAt: new Date().toISOString(),
      buildMs: Date.now() - started,
    };
    await writeFile(join(out, 'kit.json'), JSON.stringify({ ...record, modules: kernel.modules, rootfsMiB: imageMiB }, null, 2));
    const final = join(cacheDir, hash);
    try {
      await rename(out, final);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      // Someone else finished the same kit: keep theirs.
      await rm(out, { recursive: true, force: true });
    }
    progress(`guest kit ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${final}`);
    const kit = await readKit(cacheDir, hash);
    if (!kit) throw new KataError('E_STATE', `guest kit ${final} is incomplete after the build`);
    return { ...kit, outcome: 'built', kernelOutcome: kernel.outcome };
  } catch (e) {
    await rm(out, { recursive: true, force: true }).catch(() => {});
    throw isKataError(e) ? e : new KataError('E_INTERNAL', `guest kit build failed: ${(e as Error).message}`, {}, { cause: e });
  } finally {
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
}

interface KitKernel {
  /** File name in the kit directory. */
  file: string;
  pvh: boolean;
  release: string;
  modules: ResolvedModules;
  outcome: 'built' | 'reused';
}

/** The source-built kernel (from its own cache, compiled if absent) and an initramfs without modules. */
async function builtKernel(
  cacheDir: string,
  inputs: KernelBuildInputs,
  out: string,
  busybox: string,
  progress: (m: string) => void,
): Promise<KitKernel> {
  const built = await ensureBuiltKernel(cacheDir, inputs, progress);
  if (built.outcome === 'reused') progress(`reusing the guest kernel ${built.release} (${built.dir})`);
  await copyFile(built.vmlinux, join(out, 'vmlinux'));
  progress('building the initramfs (busybox; the kernel has every driver built in)');
  await writeFile(join(out, 'initrd.cpio'), await buildInitramfs({ busybox, kernelRoot: '', release: built.release, modules: [] }));
  return { file: 'vmlinux', pvh: true, release: built.release, modules: { load: [], builtin: [] }, outcome: built.outcome };
}

/** Debian's linux-image-amd64: downloaded, unpacked, its vmlinux extracted, the guest's modules in the initramfs. */
async function stockKernel(pkg: KernelPackage, work: string, out: string, tools: Tools, progress: (m: string) => void): Promise<KitKernel> {
  const dl = join(work, 'download');
  await mkdir(dl);
  const deb = await downloadKernel(pkg, dl, progress);
  const kroot = join(work, 'kernel');
  await extractKernel(deb, kroot, pkg.release, progress);
  await rm(deb, { force: true });

  const config = await readFile(join(kroot, 'boot', `config-${pkg.release}`), 'utf8').catch(() => '');
  const vmlinuz = join(kroot, 'boot', `vmlinuz-${pkg.release}`);
  let file = 'vmlinux';
  let pvh = false;
  if (/^CONFIG_PVH=y$/m.test(config)) {
    await extractVmlinux(vmlinuz, join(out, 'vmlinux'), progress);
    pvh = await hasPvhNote(join(out, 'vmlinux'));
  }
  if (!pvh) {
    progress(`kernel ${pkg.release} has no PVH entry; booting the compressed bzImage (slower under TCG)`);
    await rm(join(out, 'vmlinux'), { force: true });
    file = 'vmlinuz';
    await copyFile(vmlinuz, join(out, file));
  }

  progress('building the initramfs (busybox and kernel modules)');
  const modDir = join(kroot, 'lib', 'modules', pkg.release);
  const modules = resolveModules(
    GUEST_MODULES,
    parseModulesDep(await readFile(join(modDir, 'modules.dep'), 'utf8')),
    parseModulesBuiltin(await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '')),
  );
  for (const m of modules.load) {
    if (!m.endsWith('.ko'))
      throw new KataError('E_UNSUPPORTED', `kernel module ${m} is compressed; this build only packs uncompressed modules`);
  }
  await writeFile(
    join(out, 'initrd.cpio'),
    await buildInitramfs({ busybox: tools.busybox, kernelRoot: kroot, release: pkg.release, modules: modules.load }),
  );
  await rm(kroot, { recursive: true, force: true });
  return { file, pvh, release: pkg.release, modules, outcome: 'built' };
}
