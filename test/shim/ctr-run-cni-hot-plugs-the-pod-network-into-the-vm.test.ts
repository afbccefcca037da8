/**
 * `ctr run --cni` runs CNI in the task's network namespace after Create (the VM's namespace: the
 * task pid is QEMU's); the shim notices the veth that the [bridge + host-local] chain put there
 * and hot-plugs it into the VM before Start, so the container has the pod's address and reaches
 * the bridge's gateway. Kata does not handle interfaces added after boot (kata-containers#9340).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { namesIn } from '../cni/helpers/inspect.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { ctrRig, IMG, nothingLeft } from './helpers/ctr-rig.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;

t.test('ctr run --cni with [bridge, host-local]: the container has the pod address and pings the gateway', { skip }, async (t) => {
  const r = await ctrRig(t);
  const ipam = join(r.c.dir, 'ipam');
  const conflist = {
    cniVersion: '1.0.0',
    name: 'krt-shim-br',
    plugins: [
      {
        type: 'bridge',
        bridge: 'krtbr0',
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', dataDir: ipam, ranges: [[{ subnet: '10.97.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
    ],
  };
  // go-cni's defaults (/etc/cni/net.d, /opt/cni/bin) exist only in containerd's private mount namespace.
  writeFileSync(join(r.c.dir, '10-krt.conflist'), JSON.stringify(conflist));
  await r.c.inMnt('mkdir', ['-p', '/etc/cni/net.d', '/opt/cni/bin']);
  await r.c.inMnt('cp', [join(r.c.dir, '10-krt.conflist'), '/etc/cni/net.d/']);
  await r.c.inMnt('cp', ['/usr/lib/cni/bridge', '/usr/lib/cni/host-local', '/opt/cni/bin/']);

  const out = await r.c.ctr(
    [...r.run, '--cni', '--rm', IMG, 'net1', 'sh', '-c', 'ip -4 -o addr show dev eth0; ping -c 3 -W 10 10.97.0.1 && echo ping-ok'],
    { reject: false },
  );
  t.equal(out.exitCode, 0, `the command exits 0: ${out.stderr}`);
  t.match(out.stdout, /eth0\s+inet 10\.97\.0\.\d+\/24/, `the container's eth0 has the pod address: ${out.stdout}`);
  t.match(out.stdout, /ping-ok/, 'and the bridge gateway answers');

  t.same(await namesIn(r.c.hostNs), ['krtbr0', 'lo'].sort(), 'only the bridge is left on the host side (the veth went with the VM)');
  await nothingLeft(t, r);
});
