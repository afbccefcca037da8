import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  closeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import type { NetnsRef } from '../../../host/netns.js';

/**
 * containerd for one test, touching nothing of the host:
 *  - a private, persistent mount namespace (bound at <dir>/mntns) in which /etc, /opt, /var/lib and
 *    /run are overlays with a tmpfs upper layer: `ctr run --cni` (go-cni with its defaults) reads
 *    /etc/cni/net.d and /opt/cni/bin, libcni caches results under /var/lib/cni, containerd's shims
 *    put sockets under /run/containerd: all of it lands in the tmpfs and vanishes with the namespace;
 *  - containerd with its own config, root, state and socket under the temp dir, started with
 *    `nsenter --mount=<mntns> --net=<host netns>` (not `ip netns exec`, which remounts /sys and hides
 *    the cgroup mounts runc needs); its mounts (the container rootfs) live in that mount namespace;
 *  - ctr run the same way, so the CNI plugins it runs create the host side of the pod's veth in the
 *    test's host namespace.
 */
export interface Containerd {
  dir: string;
  mntns: string;
  socket: string;
  /** containerd's ttRPC socket (`[ttrpc] address`), where shims forward events: their $TTRPC_ADDRESS. */
  ttrpcSocket: string;
  hostNs: NetnsRef;
  pid: number;
  /** `ctr -a SOCKET -n krt ARGS` inside the private mount and host network namespaces. */
  ctr(args: string[], opts?: { reject?: boolean }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** Run any command inside the private mount namespace. */
  inMnt(file: string, args: string[]): Promise<string>;
  /** Spawn `ctr ...` in the background (e.g. `run` in the foreground of ctr). */
  spawnCtr(args: string[]): ChildProcess & { output: () => string };
  log(): string;
  stop(): Promise<void>;
}

interface Teardownable {
  teardown(fn: () => unknown): void;
  /** A tap Test: on a failure, the tail of containerd's log (with the shims' lines) is printed before it goes. */
  passing?(): boolean;
  comment?(...msg: unknown[]): void;
}

const BINARIES = ['/usr/bin/containerd', '/usr/bin/ctr', '/usr/bin/containerd-shim-runc-v2', '/usr/sbin/runc'];

/** Why containerd cannot run here, or undefined. */
export function containerdUnavailable(): string | undefined {
  const missing = BINARIES.filter((b) => !existsSync(b));
  if (missing.length > 0) return `missing ${missing.join(', ')} (Debian packages containerd, runc)`;
  if (!readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n'))
    return 'the kernel has no overlay filesystem (needed for the private /etc, /opt, /var/lib, /run and the overlayfs snapshotter)';
  if (!existsSync('/sys/fs/cgroup/memory') && !existsSync('/sys/fs/cgroup/cgroup.controllers'))
    return 'no cgroup hierarchy mounted at /sys/fs/cgroup (runc needs it)';
  return undefined;
}

async function mountList(): Promise<string[]> {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter(Boolean);
}

export interface ContainerdOptions {
  /** containerd's `opt` directory: <opt>/bin is put first on containerd's PATH (where a shim is found). */
  optDir?: string;
}

export async function startContainerd(t: Teardownable, hostNs: NetnsRef, opts: ContainerdOptions = {}): Promise<Containerd> {
  const dir = mkdtempSync(join(tmpdir(), 'krt-ctrd-'));
  const mntns = join(dir, 'mntns');
  const socket = join(dir, 'c.sock');
  let child: ChildProcess | undefined;
  let logFd: number | undefined;

  const teardown = async (): Promise<void> => {
    if (t.passing && !t.passing()) t.comment?.(`containerd log, last 80 lines:\n${c.log().split('\n').slice(-80).join('\n')}`);
    // Tasks and shims first (a failed test may leave a container running), then containerd.
    if (child && child.exitCode === null && existsSync(socket)) {
      const ls = await c.ctr(['task', 'ls', '-q'], { reject: false });
      for (const id of ls.stdout.split('\n').filter(Boolean)) {
        await c.ctr(['task', 'kill', '-s', 'KILL', id], { reject: false });
        await c.ctr(['task', 'rm', '-f', id], { reject: false });
        await c.ctr(['container', 'rm', id], { reject: false });
      }
    }
    for (const pid of shimPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await c.stop();
    // Anything containerd mounted is in its private mount namespace; check the host table anyway.
    for (const m of (await mountList())
      .filter((p) => p.startsWith(`${dir}/`) && p !== mntns)
      .sort()
      .reverse()) {
      await run('umount', ['-l', m], { reject: false });
    }
    if (logFd !== undefined) closeSync(logFd); // an open file would keep the bind mount of dir busy
    await run('umount', [mntns], { reject: false });
    await run('umount', [dir], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  };

  const c: Containerd = {
    dir,
    mntns,
    socket,
    ttrpcSocket: `${socket}.ttrpc`,
    hostNs,
    pid: 0,
    ctr: (args, opts = {}) =>
      run('nsenter', [`--mount=${mntns}`, `--net=${hostNs.path}`, 'ctr', '-a', socket, '-n', 'krt', ...args], {
        reject: opts.reject ?? true,
        timeoutMs: 120_000,
      }),
    inMnt: async (file, args) => (await run('nsenter', [`--mount=${mntns}`, file, ...args])).stdout,
    spawnCtr: (args) => {
      const p = spawn('nsenter', [`--mount=${mntns}`, `--net=${hostNs.path}`, 'ctr', '-a', socket, '-n', 'krt', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      p.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      p.stderr!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      return Object.assign(p, { output: () => out });
    },
    log: () => (existsSync(join(dir, 'containerd.log')) ? readFileSync(join(dir, 'containerd.log'), 'utf8') : ''),
    stop: async () => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child!.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child?.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  t.teardown(teardown);

  // The private mount namespace with its overlays.
  await run('mount', ['--bind', dir, dir]);
  await run('mount', ['--make-private', dir]);
  writeFileSync(mntns, '');
  await run('unshare', [`--mount=${mntns}`, '--propagation', 'private', 'true']);
  const ovl = join(dir, 'ovl');
  mkdirSync(ovl);
  await c.inMnt('mount', ['-t', 'tmpfs', '-o', 'mode=700', 'krt-ovl', ovl]);
  for (const target of ['/etc', '/opt', '/var/lib', '/run']) {
    const n = target.slice(1).replace(/\//g, '_');
    await c.inMnt('mkdir', ['-p', `${ovl}/${n}-up`, `${ovl}/${n}-work`]);
    await c.inMnt('mount', [
      '-t',
      'overlay',
      'krt-ovl',
      '-o',
      `lowerdir=${target},upperdir=${ovl}/${n}-up,workdir=${ovl}/${n}-work`,
      target,
    ]);
  }

  writeFileSync(
    join(dir, 'config.toml'),
    [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      // No CRI: it would read /etc/cni/net.d and manage pods of its own.
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
      '[grpc]',
      `  address = "${socket}"`,
      '[ttrpc]',
      `  address = "${c.ttrpcSocket}"`,
      ...(opts.optDir ? ['[plugins."io.containerd.internal.v1.opt"]', `  path = "${opts.optDir}"`] : []),
      '',
    ].join('\n'),
  );
  logFd = openSync(join(dir, 'containerd.log'), 'a');
  child = spawn('nsenter', [`--mount=${mntns}`, `--net=${hostNs.path}`, 'containerd', '--config', join(dir, 'config.toml')], {
    stdio: ['ignore', logFd, logFd],
  });
  c.pid = child.pid ?? 0;
  for (let i = 0; i < 150; i++) {
    if (child.exitCode !== null) throw new Error(`containerd exited ${child.exitCode}: ${c.log().split('\n').slice(-8).join(' | ')}`);
    if (existsSync(socket) && (await c.ctr(['version'], { reject: false })).exitCode === 0) return c;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`containerd did not answer on ${socket} within 30 s: ${c.log().split('\n').slice(-8).join(' | ')}`);
}

/**
 * PIDs of the shims (runc's, ours) this containerd started: containerd 1.6 writes no shim.pid, so
 * they are found by their command line, which names this containerd's own socket (`-address <dir>/c.sock`).
 */
export function shimPids(dir: string): number[] {
  const socket = join(dir, 'c.sock');
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf('-address');
    // The runc shim is a binary; ours runs as `node .../containerd-shim-kata-resources-v2`.
    const shim = argv.slice(0, 2).some((a) => /containerd-shim-[a-z0-9-]+-v2$/.test(a));
    if (shim && i >= 0 && argv[i + 1] === socket) out.push(Number(e));
  }
  return out;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * A tiny OCI image (image-layout tar) built from Debian's busybox-static: one uncompressed layer
 * with /bin/busybox and a few applet symlinks, an image config, a manifest and an index whose
 * entry is named "latest". Nothing is pulled.
 */
export async function buildBusyboxImage(
  workDir: string,
  busybox = '/bin/busybox',
  opts: { files?: Record<string, Buffer> } = {},
): Promise<string> {
  const rootfs = join(workDir, 'rootfs');
  const layout = join(workDir, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  mkdirSync(blobs, { recursive: true });
  copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
  const applets = ['sh', 'sleep', 'ip', 'cat', 'ls', 'echo', 'head', 'hostname', 'wc', 'ping', 'stty', 'sha256sum', 'tr', 'true', 'printf'];
  for (const applet of applets) symlinkSync('busybox', join(rootfs, 'bin', applet));
  for (const [name, data] of Object.entries(opts.files ?? {})) writeFileSync(join(rootfs, 'bin', name), data);
  const layerTar = join(workDir, 'layer.tar');
  await run('tar', ['-C', rootfs, '--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--mtime=@0', '-cf', layerTar, 'bin']);
  const layer = readFileSync(layerTar);
  const blob = (data: Buffer): { digest: string; size: number } => {
    const h = sha256(data);
    writeFileSync(join(blobs, h), data);
    return { digest: `sha256:${h}`, size: data.length };
  };
  const l = blob(layer);
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: [l.digest] },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l }],
      }),
    ),
  );
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
          platform: { architecture: 'amd64', os: 'linux' },
        },
      ],
    }),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const out = join(workDir, 'image.tar');
  await run('tar', ['-C', layout, '-cf', out, 'oci-layout', 'index.json', 'blobs']);
  statSync(out);
  return out;
}
