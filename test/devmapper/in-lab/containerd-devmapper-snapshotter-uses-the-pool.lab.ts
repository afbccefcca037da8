/**
 * Runs inside the kernel lab (test/devmapper/containerd-uses-a-pool-made-by-the-cli-in-the-kernel-lab.test.ts):
 * Debian's containerd 1.6, configured with the snippet `devmapper pool create` prints, imports a
 * local busybox image into the pool and prepares a writable snapshot on it; the snapshot's mount is
 * a `/dev/mapper/<pool>-snap-N` device that block-rootfs detection recognises.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectBlockRootfs } from '../../../devmapper/block-rootfs.js';
import { dmTable } from '../../../devmapper/dmsetup.js';
import { removePool } from '../../../devmapper/index.js';
import { run } from '../../../host/exec.js';
import { buildBusyboxImage } from '../../cni/helpers/containerd.js';
import { cli, explain, parseJson, tempRuntime } from '../../helpers/sandbox.js';
import { poolLeftovers } from './pool-leftovers.js';

t.test('containerd imports and prepares snapshots in a pool the CLI made; the rootfs is a block device', async (t) => {
  const rt = tempRuntime(t);
  const pool = 'krt-ctrd';
  const files = [join(rt.dir, 'data.img'), join(rt.dir, 'meta.img')];
  const dir = join(rt.dir, 'containerd');
  mkdirSync(dir);
  const sock = join(dir, 'c.sock');

  const r = await cli([
    'devmapper',
    'pool',
    'create',
    pool,
    '--data-file',
    files[0]!,
    '--metadata-file',
    files[1]!,
    '--size',
    '1G',
    '--root-path',
    join(dir, 'devmapper'),
    '--base-image-size',
    '64MB',
    '--state-dir',
    rt.stateDir,
    '--json',
  ]);
  if (r.code !== 0) t.comment(explain(r));
  const { containerdConfig } = parseJson<{ containerdConfig: string }>(r);
  t.teardown(() => removePool({ stateDir: rt.stateDir, name: pool }).catch(() => {}));

  writeFileSync(
    join(dir, 'config.toml'),
    [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs"]',
      '[grpc]',
      `  address = "${sock}"`,
      '[ttrpc]',
      `  address = "${sock}.ttrpc"`,
      containerdConfig, // the printed snippet, as it is
    ].join('\n'),
  );
  const log = openSync(join(dir, 'containerd.log'), 'a');
  // containerd runs dmsetup itself; with no udev in the VM, libdevmapper must make the nodes.
  const containerd = spawn('containerd', ['--config', join(dir, 'config.toml')], {
    stdio: ['ignore', log, log],
    env: { ...process.env, DM_DISABLE_UDEV: '1' },
  });
  const exited = new Promise<void>((res) => containerd.once('exit', () => res()));
  t.teardown(async () => {
    if (containerd.exitCode === null && containerd.signalCode === null) {
      containerd.kill('SIGTERM');
      const timer = setTimeout(() => containerd.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    closeSync(log);
  });
  const ctr = (args: string[], reject = true) => run('ctr', ['-a', sock, '-n', 'krt', ...args], { timeoutMs: 600_000, reject });
  const ctrLog = () => readFileSync(join(dir, 'containerd.log'), 'utf8').split('\n').slice(-15).join('\n');
  for (let i = 0; ; i++) {
    if (existsSync(sock) && (await ctr(['version'], false)).exitCode === 0) break;
    if (containerd.exitCode !== null || i > 600) throw new Error(`containerd did not come up:\n${ctrLog()}`);
    await new Promise((res) => setTimeout(res, 200));
  }
  const plugins = (await ctr(['plugins', 'ls'])).stdout;
  t.match(
    plugins,
    /io\.containerd\.snapshotter\.v1\s+devmapper\s+linux\/amd64\s+ok/,
    `the devmapper snapshotter is up on the pool (${ctrLog()})`,
  );

  const image = await buildBusyboxImage(join(rt.dir, 'image'));
  await ctr(['images', 'import', '--snapshotter', 'devmapper', '--base-name', 'krt.local/busybox', image]);
  const snaps = (await ctr(['snapshots', '--snapshotter', 'devmapper', 'ls'])).stdout;
  const committed = /^(sha256:[0-9a-f]{64})\s+\S*\s+Committed/m.exec(snaps)?.[1];
  t.ok(committed, `the image layer is a committed devmapper snapshot (${snaps})`);

  await ctr(['snapshots', '--snapshotter', 'devmapper', 'prepare', 'krt-rootfs', committed!]);
  const mounts = (await ctr(['snapshots', '--snapshotter', 'devmapper', 'mounts', '/krt-target', 'krt-rootfs'])).stdout.trim();
  const m = /^mount -t (\S+) (\S+) \/krt-target(?: -o ?(\S*))?$/.exec(mounts);
  t.ok(m, `ctr snapshots mounts prints one mount (${mounts})`);
  if (!m) return;
  const [, type, source, options] = m;
  t.match(source, new RegExp(`^/dev/mapper/${pool}-snap-\\d+$`), 'the source is a thin device of our pool');
  const [line] = await dmTable(source!.replace('/dev/mapper/', ''));
  t.equal(line?.target, 'thin', 'a thin device');
  const blk = await detectBlockRootfs([{ type: type!, source: source!, options: options ? options.split(',') : [] }], {
    disableBlockDeviceUse: false,
  });
  t.match(blk, { source, fsType: 'ext4', major: Number }, 'block-rootfs detection recognises it');
  t.equal(await detectBlockRootfs([{ type: type!, source: source! }], { disableBlockDeviceUse: true }), undefined, 'unless disabled');

  // The image is in it: mount the snapshot and look.
  const mnt = join(rt.dir, 'mnt');
  mkdirSync(mnt);
  await run('mount', ['-t', type!, source!, mnt]);
  t.ok(existsSync(join(mnt, 'bin', 'busybox')), 'the snapshot holds the image');
  await run('umount', [mnt]);

  await ctr(['snapshots', '--snapshotter', 'devmapper', 'rm', 'krt-rootfs']);
  await ctr(['images', 'rm', 'krt.local/busybox:latest']);
  containerd.kill('SIGTERM');
  await exited;
  // containerd leaves its committed (and base) thin devices in the pool: pool remove takes them away.
  const rm = await cli(['devmapper', 'pool', 'remove', pool, '--state-dir', rt.stateDir]);
  if (rm.code !== 0) t.comment(explain(rm));
  t.equal(rm.code, 0, 'pool remove');
  t.same(await poolLeftovers(pool, rt.stateDir, files), [], "no dm device (ours or containerd's), no loop device, no file");
});
