/**
 * The embedded default guest ("guest kit"): an uncompressed Debian kernel, a small initramfs and an
 * ext4 rootfs holding node and the guest agent. Built once per set of inputs and cached under
 * /var/cache/kata-resources/guest-kit/<hash> (KATA_GUEST_KIT_DIR or opts.cacheDir to move it).
 *
 * The hash covers every input: the kernel package and version apt resolves, the busybox, node and
 * ip binaries and their libraries (content hashes), the agent bundle, the module list, the init
 * scripts and GUEST_KIT_BUILD_VERSION. Computing it costs apt-cache calls and hashing ~100 MB, so a
 * fingerprint of the same inputs' file stats short-cuts the common case to a few stats. That pointer is
 * kept per checkout, and old kits are pruned (kit-cache.ts).
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
import { GUEST_MODULES, parseModulesBuiltin, parseModulesDep, resolveModules } from './modules.js';
import { MONITOR_SOURCE, buildMonitor, monitorInputsHash } from './monitor.js';
import { ROOTFS_INIT_SCRIPT, makeRootfsImage, parseLdd, stageRootfs } from './rootfs.js';

/** Bump when the build changes in a way the other inputs do not capture (3: the agent's code cache). */
const GUEST_KIT_BUILD_VERSION = 3;
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
}

export interface EnsureGuestKitOptions {
  cacheDir?: string;
  onProgress?: (msg: string) => void;
  log?: Logger;
}

interface KitRecord {
  hash: string;
  kernelVersion: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  pvh: boolean;
  files: { kernel: string; initrd: string; rootfs: string };
  inputs: Inputs;
  builtAt: string;
  buildMs: number;
}

interface Inputs {
  buildVersion: number;
  kernel: { name: string; version: string };
  binaries: Record<string, string>;
  libraries: Record<string, string>;
  agent: string;
  monitor: string;
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

async function computeInputs(tools: Tools, kernel: KernelPackage, agent: AgentFiles): Promise<Inputs> {
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
    kernel: { name: kernel.name, version: kernel.version },
    binaries,
    libraries,
    // The code cache is made from these and the node binary (above): no input of its own.
    agent: sha256(Buffer.concat([agent.agent, Buffer.from('\0'), agent.start])),
    monitor: await monitorInputsHash(),
    modules: GUEST_MODULES,
    scripts: sha256(`${INIT_SCRIPT}\0${ROOTFS_INIT_SCRIPT}`),
  };
}

function hashInputs(inputs: Inputs): string {
  return sha256(JSON.stringify(inputs)).slice(0, 20);
}

/** The cache key of the kit the current host would build (apt-cache, hashing, agent bundling: not free). */
export async function guestKitInputsHash(): Promise<string> {
  const [tools, kernel, agent] = await Promise.all([findTools(), resolveKernelPackage(), bundleAgent()]);
  return hashInputs(await computeInputs(tools, kernel, agent));
}

/** Stats of everything the full hash depends on, to recognise "nothing changed" cheaply. */
async function fingerprint(paths: string[]): Promise<string> {
  const parts: unknown[] = [GUEST_KIT_BUILD_VERSION, sha256(INIT_SCRIPT + ROOTFS_INIT_SCRIPT), GUEST_MODULES];
  for (const p of paths) {
    const s = await stat(p).catch(() => undefined);
    // Size and mtime, not the inode: the same files seen through an overlay (a private mount
    // namespace, as containerd's tests make) have other inodes.
    parts.push([p, s?.size, s?.mtimeMs]);
  }
  parts.push(await agentSourceStats());
  const m = await stat(MONITOR_SOURCE).catch(() => undefined);
  parts.push([MONITOR_SOURCE, m?.size, m?.mtimeMs]);
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
    const cur = JSON.parse(await readFile(currentPointerFile(cacheDir), 'utf8')) as { hash: string };
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
  const currentFile = currentPointerFile(cacheDir);

  // Fast path: same file stats as when the current kit was resolved.
  try {
    const cur = JSON.parse(await readFile(currentFile, 'utf8')) as { hash: string; fingerprint: string; paths: string[] };
    if (cur.fingerprint === (await fingerprint(cur.paths))) {
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

  const [tools, kernel, agent] = await Promise.all([findTools(), resolveKernelPackage(progress), bundleAgent()]);
  const inputs = await computeInputs(tools, kernel, agent);
  const hash = hashInputs(inputs);
  const remember = async (): Promise<void> => {
    const paths = [tools.node, tools.ip, tools.busybox, tools.runc, ...tools.libs, ...APT_STATE];
    const tmp = `${currentFile}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ hash, fingerprint: await fingerprint(paths), paths }));
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
        kit = await build(cacheDir, hash, inputs, tools, kernel, agent, progress);
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
  kernel: KernelPackage,
  agent: AgentFiles,
  progress: (m: string) => void,
): Promise<GuestKit> {
  const started = Date.now();
  progress(`building the guest kit ${hash} (kernel ${kernel.name} ${kernel.version}); this happens once`);
  const out = join(cacheDir, `.build-${hash}-${process.pid}`);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'kr-guest-kit-'));
  try {
    const dl = join(work, 'download');
    await mkdir(dl);
    const deb = await downloadKernel(kernel, dl, progress);
    const kroot = join(work, 'kernel');
    await extractKernel(deb, kroot, kernel.release, progress);
    await rm(deb, { force: true });

    const config = await readFile(join(kroot, 'boot', `config-${kernel.release}`), 'utf8').catch(() => '');
    const vmlinuz = join(kroot, 'boot', `vmlinuz-${kernel.release}`);
    let kernelFile = 'vmlinux';
    let pvh = false;
    if (/^CONFIG_PVH=y$/m.test(config)) {
      await extractVmlinux(vmlinuz, join(out, 'vmlinux'), progress);
      pvh = await hasPvhNote(join(out, 'vmlinux'));
    }
    if (!pvh) {
      progress(`kernel ${kernel.release} has no PVH entry; booting the compressed bzImage (slower under TCG)`);
      await rm(join(out, 'vmlinux'), { force: true });
      kernelFile = 'vmlinuz';
      await copyFile(vmlinuz, join(out, kernelFile));
    }

    progress('building the initramfs (busybox and kernel modules)');
    const modDir = join(kroot, 'lib', 'modules', kernel.release);
    const resolved = resolveModules(
      GUEST_MODULES,
      parseModulesDep(await readFile(join(modDir, 'modules.dep'), 'utf8')),
      parseModulesBuiltin(await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '')),
    );
    for (const m of resolved.load) {
      if (!m.endsWith('.ko'))
        throw new KataError('E_UNSUPPORTED', `kernel module ${m} is compressed; this build only packs uncompressed modules`);
    }
    await writeFile(
      join(out, 'initrd.cpio'),
      await buildInitramfs({ busybox: tools.busybox, kernelRoot: kroot, release: kernel.release, modules: resolved.load }),
    );
    await rm(kroot, { recursive: true, force: true });

    progress('building the rootfs image (node, guest agent, kata-monitor, ip, runc, busybox): osbuilder layout, ext4 by mkfs.ext4 -d');
    const monitor = join(work, 'kata-monitor');
    await buildMonitor(monitor);
    const stage = join(work, 'rootfs');
    const agentCodeCache = await trainAgentCodeCache(tools.node, agent, progress);
    await stageRootfs(stage, { node: tools.node, ip: tools.ip, busybox: tools.busybox, runc: tools.runc, monitor, agent, agentCodeCache });
    const { imageMiB } = await makeRootfsImage(stage, join(out, 'rootfs.img'));

    const record: KitRecord = {
      hash,
      kernelVersion: kernel.release,
      kernelPackage: kernel.name,
      kernelPackageVersion: kernel.version,
      pvh,
      files: { kernel: kernelFile, initrd: 'initrd.cpio', rootfs: 'rootfs.img' },
      inputs,
      builtAt: new Date().toISOString(),
      buildMs: Date.now() - started,
    };
    await writeFile(join(out, 'kit.json'), JSON.stringify({ ...record, modules: resolved, rootfsMiB: imageMiB }, null, 2));
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
    return { ...kit, outcome: 'built' };
  } catch (e) {
    await rm(out, { recursive: true, force: true }).catch(() => {});
    throw isKataError(e) ? e : new KataError('E_INTERNAL', `guest kit build failed: ${(e as Error).message}`, {}, { cause: e });
  } finally {
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
}
