import t from 'tap';
import { reworkSpec } from '../../../guest/agent/oci-spec.js';
import type { OciSpec } from '../../../guest/agent/protocol.js';

const hostSpec = (): OciSpec => ({
  ociVersion: '1.0.2',
  process: { args: ['sh'], cwd: '/', apparmorProfile: 'docker-default', selinuxLabel: 'x' },
  root: { path: 'rootfs', readonly: true },
  hooks: { prestart: [{ path: '/usr/bin/host-hook' }] },
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/etc/hosts', type: 'bind', source: '/guest/has/this', options: ['rbind', 'ro'] },
  ],
  linux: {
    namespaces: [
      { type: 'pid' },
      { type: 'network', path: '/var/run/netns/cni-1' },
      { type: 'ipc', path: '/proc/42/ns/ipc' },
      { type: 'cgroup' },
      { type: 'time' },
    ],
    cgroupsPath: '/default/c1',
    resources: {
      devices: [{ allow: false, access: 'rwm' }],
      blockIO: { weight: 10 },
      pids: { limit: 5 },
      cpu: { shares: 512, cpus: '0-63', mems: '0' },
      memory: { limit: 1 << 30 },
    },
    mountLabel: 'y',
  },
});

t.test('host-only parts are dropped, the rest kept', async (t) => {
  const s = reworkSpec(hostSpec(), { containerId: 'c1', rootfs: '/run/kata-containers/c1/rootfs', exists: (p) => p === '/guest/has/this' });
  t.same(s.root, { path: '/run/kata-containers/c1/rootfs', readonly: true }, 'root.path is the bundle bind, readonly kept');
  t.equal(s.hooks, undefined, 'hooks removed');
  t.same(s.linux!.namespaces, [{ type: 'pid' }, { type: 'ipc' }], 'network, cgroup, time dropped; paths emptied');
  t.equal(s.linux!.cgroupsPath, '/default/c1');
  t.same(
    s.linux!.resources,
    { devices: [{ allow: true, access: 'rwm' }], cpu: { shares: 512 }, memory: { limit: 1 << 30 } },
    'devices relaxed; host cpusets, blkio, pids cleared',
  );
  t.equal(s.process!.apparmorProfile, undefined);
  t.equal(s.process!.selinuxLabel, undefined);
  t.equal(s.linux!.mountLabel, undefined);
  t.same(hostSpec().linux!.cgroupsPath, '/default/c1', 'the input is not modified');
});

t.test('cgroupsPath forms', async (t) => {
  const cg = (p: string | undefined): string | undefined => {
    const s = hostSpec();
    s.linux!.cgroupsPath = p;
    return reworkSpec(s, { containerId: 'c9', rootfs: '/r', exists: () => true }).linux!.cgroupsPath;
  };
  t.equal(cg(undefined), '/kata/c9');
  t.equal(cg('kubepods-besteffort-pod1.slice:cri-containerd:abc'), '/kubepods-besteffort-pod1/cri-containerd-abc', 'systemd triplet');
  t.equal(cg('a/../b'), '/a/b', 'relative, no ..');
});

t.test('a bind mount whose source is not in the guest is refused', async (t) => {
  t.throws(() => reworkSpec(hostSpec(), { containerId: 'c1', rootfs: '/r', exists: () => false }), {
    code: 'E_INVALID_ARGUMENT',
    message: /\/etc\/hosts.*\/guest\/has\/this/,
  });
  t.throws(() => reworkSpec({ ...hostSpec(), process: undefined }, { containerId: 'c1', rootfs: '/r' }), { code: 'E_INVALID_ARGUMENT' });
});
