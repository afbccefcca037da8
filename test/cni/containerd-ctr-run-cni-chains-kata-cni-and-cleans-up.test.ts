import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempNetns } from '../helpers/netns.js';
import { ensureFreshBundle, filesUnder, REPO } from './helpers/cni-runtime.js';
import { buildBusyboxImage, containerdUnavailable, shimPids, startContainerd } from './helpers/containerd.js';
import { namesIn, redirectState } from './helpers/inspect.js';

/**
 * The real thing: containerd (Debian) + runc, `ctr run --cni` with the conflist [ptp, kata-cni]
 * from a CNI dir the test prepares, a local busybox image, nothing pulled. While the container
 * runs, its netns holds the tap and both redirect filters; after it exits and is removed, nothing
 * of ours is left (record, host veth, address, shim, mounts).
 */
const why = containerdUnavailable();

t.test(
  'ctr run --cni with [ptp, kata-cni]: tap + redirects while running, nothing left after',
  { skip: why ? `containerd cannot run here: ${why}` : false },
  async (t) => {
    const host = await tempNetns(t, 'ctrdh');
    const c = await startContainerd(t, host);
    const image = await buildBusyboxImage(join(c.dir, 'img'));
    await c.ctr(['images', 'import', '--base-name', 'krt.local/busybox', image]);
    t.match((await c.ctr(['images', 'ls', '-q'])).stdout, /krt\.local\/busybox:latest/, 'local image imported');

    // go-cni's defaults, inside the private mount namespace: /etc/cni/net.d and /opt/cni/bin.
    const stateDir = join(c.dir, 'kata-cni-state');
    const ipamDir = join(c.dir, 'ipam');
    const logFile = join(c.dir, 'kata-cni.log');
    const conflist = {
      cniVersion: '1.0.0',
      name: 'krt-ctrd',
      plugins: [
        {
          type: 'ptp',
          ipMasq: false,
          ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: '10.96.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
        { type: 'kata-cni', stateDir, logFile, logLevel: 'info' },
      ],
    };
    writeFileSync(join(c.dir, '10-krt.conflist'), JSON.stringify(conflist));
    await c.inMnt('mkdir', ['-p', '/etc/cni/net.d', '/opt/cni/bin']);
    await c.inMnt('cp', [join(c.dir, '10-krt.conflist'), '/etc/cni/net.d/']);
    await c.inMnt('cp', ['/usr/lib/cni/ptp', '/usr/lib/cni/host-local', '/opt/cni/bin/']);
    await ensureFreshBundle();
    await c.inMnt(process.execPath, [join(REPO, 'cni/build/install.mjs'), '--bin-dir', '/opt/cni/bin']);
    t.notOk(
      existsSync('/etc/cni/net.d/10-krt.conflist'),
      'the host /etc is untouched (the conflist exists only in the private mount namespace)',
    );

    const runner = c.spawnCtr([
      'run',
      '--cni',
      '--rm',
      '--null-io',
      '--fifo-dir',
      join(c.dir, 'fifo'),
      'krt.local/busybox:latest',
      'krtctr1',
      '/bin/sleep',
      '120',
    ]);
    const exited = new Promise<number | null>((r) => runner.once('exit', (code) => r(code)));
    let pid = 0;
    for (let i = 0; i < 300 && pid === 0; i++) {
      const ls = await c.ctr(['task', 'ls'], { reject: false });
      const m = /^krtctr1\s+(\d+)\s+RUNNING/m.exec(ls.stdout);
      if (m) pid = Number(m[1]);
      else if (runner.exitCode !== null) break;
      else await new Promise((r) => setTimeout(r, 200));
    }
    t.ok(pid > 0, `the container runs (ctr output: ${runner.output().trim() || 'none'})`);
    if (pid === 0) return;

    const podNs = { path: `/proc/${pid}/ns/net` };
    const st = await redirectState(podNs, 'eth0', 'tap0_kata');
    t.match(st.tap, { kind: 'tun', mode: 'tap', up: true }, 'the container netns holds the tap');
    t.same(st.ingress, ['eth0', 'tap0_kata'], 'ingress qdiscs on eth0 and the tap');
    t.same(st.redirects, ['eth0>tap0_kata', 'tap0_kata>eth0'], 'both redirect filters');
    t.same(
      filesUnder(stateDir),
      ['krt-ctrd/krt-krtctr1@eth0.json'],
      'the attachment is recorded (container id as ctr names it: <namespace>-<id>)',
    );
    t.ok(
      (await namesIn(host)).some((l) => l.startsWith('veth')),
      'ptp made the host side in the test host namespace',
    );
    const shims = shimPids(c.dir);
    t.equal(shims.length, 1, `one shim (${shims.join(',')})`);

    await c.ctr(['task', 'kill', '-s', 'KILL', 'krtctr1']);
    const code = await exited;
    t.equal(code, 137, 'ctr run ends with the task (killed)');
    t.notMatch(runner.output(), /level=error|network/i, `ctr reported no CNI error: ${runner.output().trim()}`);

    t.equal((await c.ctr(['container', 'ls', '-q'])).stdout.trim(), '', 'the container is removed (--rm)');
    t.same(
      filesUnder(stateDir).filter((f) => f.endsWith('.json')),
      [],
      'no attachment record left (DEL ran, with CNI_NETNS empty as ctr sends it)',
    );
    t.same(await namesIn(host), ['lo'], 'no host-side veth left');
    t.same(
      filesUnder(ipamDir).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f)),
      [],
      'the address is released',
    );
    const log = readFileSync(logFile, 'utf8');
    t.match(log, /"command":"ADD".*"msg":"attached"/, 'kata-cni logged the ADD to its log file');
    t.match(log, /"command":"DEL"/, 'and the DEL');
    // An exited shim may linger as a zombie until PID 1 (not ours) reaps it: exited is what counts.
    const alive = (pid: number): boolean => {
      try {
        return !/^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    t.notOk(shims.some(alive), 'the shim has exited');
    const mounts = readFileSync(`/proc/${c.pid}/mounts`, 'utf8')
      .split('\n')
      .filter((l) => l.includes('io.containerd.runtime.v2.task'));
    t.same(mounts, [], "no container rootfs mount left in containerd's mount namespace");
  },
);
