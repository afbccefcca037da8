/**
 * Kubernetes' path for one test, without kubelet: a private containerd with the CRI plugin on, set up
 * with exactly the CRI configuration block the README gives a Kubernetes user (read from README.md,
 * so the two cannot drift), plus what a node provides around it: the shim installed on containerd's
 * PATH, our configuration file at the block's ConfigPath (inside containerd's private /etc), a CNI
 * conf dir with one conflist and a CNI bin dir (loopback, bridge, host-local, kata-cni), a local pause
 * image imported under the configured `sandbox_image` name and a busybox image, nothing pulled. The
 * CRI client talks to containerd's socket as kubelet would.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupHierarchies, makeCgroup, removeCgroups } from '../../../host/cgroups.js';
import { run } from '../../../host/exec.js';
import type { NetnsRef } from '../../../host/netns.js';
import { DEBIAN_CNI_DIR, ensureFreshBundle, REPO } from '../../cni/helpers/cni-runtime.js';
import { buildBusyboxImage, startContainerd, type Containerd } from '../../cni/helpers/containerd.js';
import { tempNetns } from '../../helpers/netns.js';
import { CriClient, type PodSandboxConfig } from './cri-client.js';

export const PAUSE_IMAGE = 'krt.local/pause:latest';
export const BUSYBOX_IMAGE = 'krt.local/busybox:latest';
/** The runtime handler (the key under ...containerd.runtimes, and the RuntimeClass's handler). */
export const HANDLER = 'kata-resources';
/** containerd's default handler (runc), the baseline. */
export const RUNC = 'runc';

/**
 * The pod's cgroup parent in every hierarchy, as kubelet makes it before RunPodSandbox (and removes
 * it after the pod): the runtime puts the sandbox below it.
 */
function kubeletPodCgroup(t: Teardownable, path: string, before: () => Promise<void>): void {
  for (const h of cgroupHierarchies()) {
    try {
      const { created } = makeCgroup(h, path);
      t.teardown(async () => {
        await before();
        await removeCgroups(created, 0);
      });
    } catch {
      /* a hierarchy the host does not allow: the runtime skips it too */
    }
  }
}

/** The CRI configuration block of the README (the one between the cri-config markers). */
export function readmeCriBlock(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const m = /<!-- cri-config -->\s*```toml\n([\s\S]*?)```/.exec(readme);
  if (!m) throw new Error('README.md has no ```toml block after <!-- cri-config -->');
  return m[1]!;
}

/** The ConfigPath the README block names (where our configuration file goes). */
function configPathOf(block: string): string {
  const m = /ConfigPath\s*=\s*"([^"]+)"/.exec(block);
  if (!m) throw new Error('the README CRI block sets no ConfigPath');
  return m[1]!;
}

export interface CriRigOptions {
  /** Put kata-cni after bridge + host-local in the conflist. */
  kataCni: boolean;
  /** The three settings the runc baseline needs on this host (disable_cgroup, disable_apparmor, restrict_oom_score_adj). */
  runcBaseline?: boolean;
  /** Extra TOML for our configuration file. */
  extraConfig?: string;
}

export interface CriRig {
  c: Containerd;
  cri: CriClient;
  hostNs: NetnsRef;
  /** Our state_dir (unique: processes and mounts of ours mention it). */
  stateDir: string;
  kataCniState: string;
  ipamDir: string;
  /** The bridge's gateway address (the first of the pod subnet). */
  gateway: string;
  subnet: string;
  /** A pod config as kubelet would send it (own uid, cgroup parent, log directory under the rig). */
  podConfig(name: string, extra?: Partial<PodSandboxConfig>): PodSandboxConfig;
  /** The cgroup parent pods of this rig get (kubelet's /kubepods/... stand-in). */
  cgroupParent: string;
}

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export async function criRig(t: Teardownable, o: CriRigOptions): Promise<CriRig> {
  const hostNs = await tempNetns(t, 'crih');
  const tag = randomBytes(3).toString('hex');
  const opt = join('/tmp', `krt-opt-${tag}`);
  mkdirSync(join(opt, 'bin'), { recursive: true });
  t.teardown(() => run('rm', ['-rf', opt]));
  await ensureFreshBundle();
  await run(process.execPath, [join(REPO, 'shim/build/install.mjs'), '--bin-dir', join(opt, 'bin')]);

  // Where the node's CNI set-up lives: created before containerd starts (CRI watches conf_dir).
  const base = join('/tmp', `krt-cri-${tag}`);
  const confDir = join(base, 'net.d');
  const binDir = join(base, 'bin');
  mkdirSync(confDir, { recursive: true });
  mkdirSync(binDir, { recursive: true });
  t.teardown(() => run('rm', ['-rf', base]));
  for (const p of ['loopback', 'bridge', 'host-local']) await run('cp', [join(DEBIAN_CNI_DIR, p), binDir]);
  await run(process.execPath, [join(REPO, 'cni/build/install.mjs'), '--bin-dir', binDir]);
  const kataCniState = join(base, 'kata-cni');
  const ipamDir = join(base, 'ipam');
  const octet = 100 + (parseInt(tag.slice(0, 2), 16) % 100);
  const subnet = `10.${octet}.7.0/24`;
  const gateway = `10.${octet}.7.1`;
  const conflist = {
    cniVersion: '1.0.0',
    name: 'krt-cri',
    plugins: [
      {
        type: 'bridge',
        bridge: `krtbr${tag.slice(0, 4)}`,
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      ...(o.kataCni ? [{ type: 'kata-cni', stateDir: kataCniState, logFile: join(base, 'kata-cni.log'), logLevel: 'info' }] : []),
    ],
  };
  writeFileSync(join(confDir, '10-krt.conflist'), JSON.stringify(conflist));

  const block = readmeCriBlock();
  const cri = [
    '[plugins."io.containerd.grpc.v1.cri"]',
    `  sandbox_image = "${PAUSE_IMAGE}"`,
    '  stream_server_port = "0"',
    ...(o.runcBaseline ? ['  disable_cgroup = true', '  disable_apparmor = true', '  restrict_oom_score_adj = true'] : []),
    '[plugins."io.containerd.grpc.v1.cri".cni]',
    `  bin_dir = "${binDir}"`,
    `  conf_dir = "${confDir}"`,
    // What `containerd config default` has: the default handler (a runtimes table replaces the implicit one).
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '  runtime_type = "io.containerd.runc.v2"',
    block,
  ].join('\n');
  const c = await startContainerd(t, hostNs, { optDir: opt, cri });

  const stateDir = join(c.dir, 'kr-state');
  const cfgPath = configPathOf(block);
  const cfgFile = join(c.dir, 'kr.toml');
  writeFileSync(cfgFile, `${o.extraConfig ?? ''}\n[runtime]\nstate_dir = "${stateDir}"\n`);
  // The block's ConfigPath lies in containerd's private /etc (an overlay): the host's /etc is untouched.
  await c.inMnt('mkdir', ['-p', join(cfgPath, '..')]);
  await c.inMnt('cp', [cfgFile, cfgPath]);

  const img = join(c.dir, 'img');
  const pauseImg = join(c.dir, 'pause');
  mkdirSync(img);
  mkdirSync(pauseImg);
  const bb = await buildBusyboxImage(img);
  const pause = await buildBusyboxImage(pauseImg, '/bin/busybox', { cmd: ['/bin/sleep', 'infinity'] });
  await c.ctr(['images', 'import', '--base-name', 'krt.local/busybox', bb], { namespace: 'k8s.io' });
  await c.ctr(['images', 'import', '--base-name', 'krt.local/pause', pause], { namespace: 'k8s.io' });

  const client = new CriClient(c.socket);
  t.teardown(() => client.close());
  // Whatever a failed test left running goes first, through CRI as kubelet would remove it (teardowns run last-registered first).
  let cleaned: Promise<void> | undefined;
  const removeAllPods = (): Promise<void> =>
    (cleaned ??= (async () => {
      for (const p of await client.listPodSandbox().catch(() => [])) {
        await client.stopPodSandbox(p.id).catch(() => {});
        await client.removePodSandbox(p.id).catch(() => {});
      }
    })());
  t.teardown(removeAllPods);
  for (let i = 0; i < 100; i++) {
    if ((await client.imageStatus(PAUSE_IMAGE).catch(() => null)) !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const cgroupParent = `/krt-kubepods-${tag}`;
  const logs = join(c.dir, 'pods');
  return {
    c,
    cri: client,
    hostNs,
    stateDir,
    kataCniState,
    ipamDir,
    gateway,
    subnet,
    cgroupParent,
    podConfig: (name, extra = {}) => {
      const uid = `${name}-${randomBytes(4).toString('hex')}`;
      if (!o.runcBaseline) kubeletPodCgroup(t, `${cgroupParent}/pod${uid}`, removeAllPods);
      return {
        metadata: { name, uid, namespace: 'krt', attempt: 0 },
        hostname: name,
        log_directory: join(logs, uid),
        dns_config: { servers: ['10.0.0.10'], searches: ['krt.svc.cluster.local'], options: ['ndots:5'] },
        linux: { cgroup_parent: `${cgroupParent}/pod${uid}` },
        ...extra,
      };
    },
  };
}
