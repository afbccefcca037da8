import t from 'tap';
import type { BlockSpec, DeviceSpec, PmemSpec } from '../../../../host/device-specs.js';
import { defaultConfig } from '../../../../runtime-core/config/defaults.js';
import type { QemuConfig } from '../../../../runtime-core/config/types.js';
import type { VmResources } from '../../../../runtime-core/hypervisor/hypervisor.js';
import {
  buildQemuCommandLine,
  MACHINE_KERNEL_PARAMS,
  type QemuHostFacts,
  type QemuMachine,
} from '../../../../runtime-core/hypervisor/qemu/cmdline.js';

const PATHS = { qmp: '/run/kr/sb/qmp.sock', agent: '/run/kr/sb/agent.sock', console: '/run/kr/sb/console.log' };
const IMAGE: BlockSpec = {
  kind: 'block',
  id: 'image',
  source: { kind: 'file', path: '/kit/rootfs.img' },
  readonly: true,
  driver: 'virtio-blk',
  format: 'raw',
};
const PMEM: PmemSpec = { kind: 'pmem', id: 'image', path: '/kit/rootfs.img', readonly: true };

function cfg(over: Partial<QemuConfig> = {}): QemuConfig {
  return { ...defaultConfig().hypervisor, maxVcpus: 2, maxMemoryMiB: 4096, ...over };
}

function host(over: Partial<QemuHostFacts> = {}): QemuHostFacts {
  return { sizeBytes: () => 64 * 1024 * 1024, ...over };
}

function machine(over: Partial<VmResources> & { config?: QemuConfig; accel?: 'kvm' | 'tcg' } = {}): QemuMachine {
  const { config, accel, ...res } = over;
  const resources: VmResources = {
    vcpus: 1,
    maxVcpus: 2,
    memoryMiB: 512,
    maxMemoryMiB: 4096,
    memorySlots: 10,
    kernel: '/kit/vmlinux',
    initrd: '/kit/initrd.img',
    image: IMAGE,
    kernelParams: ['quiet', 'root=/dev/vda'],
    devices: [],
    hotplugSlots: 4,
    ...res,
  };
  return { sandboxId: 'sb1', config: config ?? cfg(), accel: accel ?? 'tcg', resources, paths: PATHS };
}

/** Every value given to a flag, in order. */
function values(args: string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) if (args[i] === flag) out.push(args[i + 1]!);
  return out;
}

const tap = (id: string, ifname: string, mac: string, queues = 1, vhost = false): DeviceSpec => ({
  kind: 'net-tap',
  id,
  ifname,
  mac,
  mtu: 1500,
  queues,
  vhost,
});

t.test('the base VM: exact argv for the embedded-guest defaults with no devices', async (t) => {
  const r = buildQemuCommandLine(machine(), host());
  t.same(r.args, [
    '-name',
    'sandbox-sb1,debug-threads=on',
    '-machine',
    'q35,accel=tcg,memory-backend=mem0',
    '-cpu',
    'max',
    '-smp',
    '1,maxcpus=2,cores=1,threads=1,sockets=2',
    '-m',
    '512M,slots=10,maxmem=4096M',
    '-object',
    'memory-backend-file,id=mem0,size=512M,mem-path=/dev/shm,share=on',
    '-nographic',
    '-nodefaults',
    '-no-user-config',
    '-no-reboot',
    '-sandbox',
    'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-qmp',
    'unix:/run/kr/sb/qmp.sock,server=on,wait=off',
    '-chardev',
    'file,id=console0,path=/run/kr/sb/console.log',
    '-serial',
    'chardev:console0',
    '-kernel',
    '/kit/vmlinux',
    '-initrd',
    '/kit/initrd.img',
    '-device',
    'virtio-serial-pci,id=vserial0,bus=pcie.0,addr=0x01',
    '-chardev',
    'socket,id=agent0,path=/run/kr/sb/agent.sock,server=on,wait=off',
    '-device',
    'virtserialport,bus=vserial0.0,chardev=agent0,name=agent.0',
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-pci,id=rng0-dev,rng=rng0,bus=pcie.0,addr=0x02',
    '-blockdev',
    '{"driver":"raw","node-name":"drive-image","read-only":true,"file":{"driver":"file","filename":"/kit/rootfs.img","node-name":"drive-image-file","read-only":true}}',
    '-device',
    'virtio-blk-pci,id=dev-image,drive=drive-image,bus=pcie.0,addr=0x03,share-rw=on',
    '-device',
    'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1,addr=0x04',
    '-device',
    'pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=2,addr=0x05',
    '-device',
    'pcie-root-port,id=rp2,bus=pcie.0,chassis=1,slot=3,addr=0x06',
    '-device',
    'pcie-root-port,id=rp3,bus=pcie.0,chassis=1,slot=4,addr=0x07',
    '-append',
    r.kernelParams.join(' '),
  ]);
  t.same(r.fds, []);
  t.same(r.layout.rootPorts, [
    { id: 'rp0', slot: 4 },
    { id: 'rp1', slot: 5 },
    { id: 'rp2', slot: 6 },
    { id: 'rp3', slot: 7 },
  ]);
  t.same(
    r.layout.devices.map((d) => [d.specId, d.kind, d.slot, d.pciPath, d.parts.map((p) => p.kind)]),
    [['image', 'block', 3, '03', ['blockdev', 'device']]],
  );
  t.same(
    r.kernelParams,
    [...MACHINE_KERNEL_PARAMS, 'quiet', 'root=/dev/vda'],
    "the machine's parameters, then the caller's (the guest kit's)",
  );
});

t.test('KVM uses the host CPU model', async (t) => {
  const r = buildQemuCommandLine(machine({ accel: 'kvm' }), host());
  t.same(values(r.args, '-machine'), ['q35,accel=kvm,memory-backend=mem0']);
  t.same(values(r.args, '-cpu'), ['host']);
});

t.test('taps are opened by name; vhost as the spec says (decided once, by the runtime); multi-queue', async (t) => {
  const devices = [tap('eth0', 'tap0_kata', '02:00:00:00:00:01'), tap('eth1', 'tap1_kata', '02:00:00:00:00:02', 4)];
  const noVhost = buildQemuCommandLine(machine({ devices }), host());
  t.same(values(noVhost.args, '-netdev'), [
    'tap,id=net-eth0,ifname=tap0_kata,script=no,downscript=no',
    'tap,id=net-eth1,ifname=tap1_kata,script=no,downscript=no,queues=4',
  ]);
  t.same(
    values(noVhost.args, '-device').filter((d) => d.startsWith('virtio-net-pci')),
    [
      'virtio-net-pci,id=dev-eth0,netdev=net-eth0,mac=02:00:00:00:00:01,bus=pcie.0,addr=0x04,romfile=',
      'virtio-net-pci,id=dev-eth1,netdev=net-eth1,mac=02:00:00:00:00:02,bus=pcie.0,addr=0x05,mq=on,vectors=10,romfile=',
    ],
  );
  const withVhost = buildQemuCommandLine(
    machine({ devices: [tap('eth0', 'tap0_kata', '02:00:00:00:00:01', 1, true), tap('eth1', 'tap1_kata', '02:00:00:00:00:02', 4, true)] }),
    host(),
  );
  t.same(values(withVhost.args, '-netdev'), [
    'tap,id=net-eth0,ifname=tap0_kata,script=no,downscript=no,vhost=on',
    'tap,id=net-eth1,ifname=tap1_kata,script=no,downscript=no,vhost=on,queues=4',
  ]);
  t.same(
    noVhost.layout.devices
      .filter((d) => d.kind === 'net-tap')
      .map((d) => [d.specId, d.parts.find((x) => x.kind === 'netdev')?.kind, d.pciPath]),
    [
      ['eth0', 'netdev', '04'],
      ['eth1', 'netdev', '05'],
    ],
  );
  t.same(noVhost.layout.rootPorts[0], { id: 'rp0', slot: 6 }, 'root ports come after the cold-plugged devices');
});

t.test('macvtap queues and vhost-net are passed as fds 3, 4, ... of the node the plugin made', async (t) => {
  const mv: DeviceSpec = {
    kind: 'net-macvtap',
    id: 'eth0',
    devPath: '/run/kr/sb/macvtap-eth0',
    ifname: 'macvtap0',
    mac: '02:00:00:00:00:09',
    mtu: 1500,
    queues: 2,
    vhost: true,
  };
  const r = buildQemuCommandLine(machine({ devices: [mv] }), host());
  t.same(values(r.args, '-netdev'), ['tap,id=net-eth0,fds=3:4,vhost=on,vhostfds=5:6']);
  t.same(r.fds, [
    { fd: 3, path: '/run/kr/sb/macvtap-eth0', purpose: 'macvtap macvtap0 queue 0' },
    { fd: 4, path: '/run/kr/sb/macvtap-eth0', purpose: 'macvtap macvtap0 queue 1' },
    { fd: 5, path: '/dev/vhost-net', purpose: 'vhost-net for macvtap0 queue 0' },
    { fd: 6, path: '/dev/vhost-net', purpose: 'vhost-net for macvtap0 queue 1' },
  ]);
  const single = buildQemuCommandLine(machine({ devices: [{ ...mv, queues: 1, vhost: false }] }), host());
  t.same(values(single.args, '-netdev'), ['tap,id=net-eth0,fd=3']);
  t.same(
    single.fds.map((f) => f.fd),
    [3],
  );
});

t.test('virtio-fs and vhost-user-net get socket chardevs', async (t) => {
  const devices: DeviceSpec[] = [
    { kind: 'net-vhost-user', id: 'vu0', socket: '/run/vu.sock', mac: '02:00:00:00:00:0a', queues: 2 },
    { kind: 'fs-vhost-user', id: 'share', socket: '/run/kr/sb/vhost-fs.sock', tag: 'kataShared', queueSize: 1024 },
  ];
  const r = buildQemuCommandLine(machine({ devices }), host());
  t.same(values(r.args, '-chardev').slice(2), [
    'socket,id=char-share,path=/run/kr/sb/vhost-fs.sock',
    'socket,id=char-vu0,path=/run/vu.sock',
  ]);
  t.ok(
    r.args.includes('vhost-user-fs-pci,id=dev-share,chardev=char-share,tag=kataShared,queue-size=1024,bus=pcie.0,addr=0x04'),
    'fs device first, at 04',
  );
  t.same(values(r.args, '-netdev'), ['vhost-user,id=net-vu0,chardev=char-vu0,vhostforce=on,queues=2']);
  t.ok(r.args.includes('virtio-net-pci,id=dev-vu0,netdev=net-vu0,mac=02:00:00:00:00:0a,bus=pcie.0,addr=0x05,mq=on,vectors=6,romfile='));
  t.ok(values(r.args, '-object').includes('memory-backend-file,id=mem0,size=512M,mem-path=/dev/shm,share=on'), 'guest RAM is shared');
});

t.test(
  'block devices: virtio-blk on the root bus, virtio-scsi on the controller, host_device for block sources, NBD and cache options',
  async (t) => {
    const devices: DeviceSpec[] = [
      {
        kind: 'block',
        id: 'rootfs-c1',
        source: { kind: 'host-device', path: '/dev/loop7' },
        readonly: false,
        driver: 'virtio-blk',
        format: 'raw',
      },
      {
        kind: 'block',
        id: 'vol1',
        source: { kind: 'file', path: '/var/lib/vol1.img' },
        readonly: true,
        driver: 'virtio-scsi',
        format: 'raw',
      },
      {
        kind: 'block',
        id: 'vol2',
        source: { kind: 'file', path: '/var/lib/vol2.qcow2' },
        readonly: false,
        driver: 'virtio-scsi',
        format: 'qcow2',
        cache: { set: true, direct: true, noFlush: false, aio: 'threads' },
      },
      {
        kind: 'block',
        id: 'nbd0',
        source: { kind: 'nbd', server: { type: 'unix', path: '/run/nbd.sock' }, export: 'disk', reconnectDelaySec: 5, openTimeoutSec: 10 },
        readonly: false,
        driver: 'virtio-blk',
        format: 'raw',
      },
    ];
    const r = buildQemuCommandLine(machine({ devices, config: cfg({ blockDeviceDriver: 'virtio-scsi' }) }), host());
    t.same(
      values(r.args, '-blockdev')
        .slice(1)
        .map((x) => JSON.parse(x)),
      [
        {
          driver: 'raw',
          'node-name': 'drive-rootfs-c1',
          'read-only': false,
          file: { driver: 'host_device', filename: '/dev/loop7', 'node-name': 'drive-rootfs-c1-file', 'read-only': false },
        },
        {
          driver: 'raw',
          'node-name': 'drive-vol1',
          'read-only': true,
          file: { driver: 'file', filename: '/var/lib/vol1.img', 'node-name': 'drive-vol1-file', 'read-only': true },
        },
        {
          driver: 'qcow2',
          'node-name': 'drive-vol2',
          'read-only': false,
          cache: { direct: true, 'no-flush': false },
          file: {
            driver: 'file',
            filename: '/var/lib/vol2.qcow2',
            aio: 'threads',
            'node-name': 'drive-vol2-file',
            'read-only': false,
            cache: { direct: true, 'no-flush': false },
          },
        },
        {
          driver: 'raw',
          'node-name': 'drive-nbd0',
          'read-only': false,
          file: {
            driver: 'nbd',
            server: { type: 'unix', path: '/run/nbd.sock' },
            export: 'disk',
            'reconnect-delay': 5,
            'open-timeout': 10,
            'node-name': 'drive-nbd0-file',
            'read-only': false,
          },
        },
      ],
    );
    const devs = values(r.args, '-device');
    t.ok(devs.includes('virtio-scsi-pci,id=scsi0,bus=pcie.0,addr=0x04'), 'controller after the image');
    t.ok(devs.includes('virtio-blk-pci,id=dev-rootfs-c1,drive=drive-rootfs-c1,bus=pcie.0,addr=0x05'));
    t.ok(devs.includes('scsi-hd,id=dev-vol1,drive=drive-vol1,bus=scsi0.0,scsi-id=0,lun=0'));
    t.ok(devs.includes('scsi-hd,id=dev-vol2,drive=drive-vol2,bus=scsi0.0,scsi-id=1,lun=0'));
    t.same(
      r.layout.devices.map((d) => [d.specId, d.pciPath, d.scsiAddr]),
      [
        ['image', '03', undefined],
        ['rootfs-c1', '05', undefined],
        ['vol1', undefined, '0:0'],
        ['vol2', undefined, '1:0'],
        ['nbd0', '06', undefined],
      ],
    );
    t.equal(r.layout.scsiController, 'scsi0');
    const noScsi = buildQemuCommandLine(machine(), host());
    t.notOk(
      values(noScsi.args, '-device').some((d) => d.startsWith('virtio-scsi-pci')),
      'no controller with virtio-blk and no scsi devices',
    );
  },
);

t.test('the NVDIMM image: nvdimm=on, a read-only file backend, room in maxmem', async (t) => {
  const r = buildQemuCommandLine(machine({ image: PMEM }), host({ sizeBytes: () => 300 * 1024 * 1024 }));
  t.same(values(r.args, '-machine'), ['q35,accel=tcg,nvdimm=on,memory-backend=mem0']);
  t.same(values(r.args, '-m'), ['512M,slots=10,maxmem=5120M'], '1 GiB extra address space (Kata) for a 300 MiB image');
  t.ok(
    values(r.args, '-object').includes(
      `memory-backend-file,id=mem-image,mem-path=/kit/rootfs.img,size=${300 * 1024 * 1024},share=on,readonly=on`,
    ),
  );
  t.ok(values(r.args, '-device').includes('nvdimm,id=dev-image,memdev=mem-image,unarmed=on'));
  t.notOk(values(r.args, '-blockdev').length, 'no virtio-blk image');
  const big = buildQemuCommandLine(machine({ image: PMEM, memorySlots: 0 }), host({ sizeBytes: () => 3 * 1024 * 1024 * 1024 }));
  t.same(values(big.args, '-m'), ['512M,slots=1,maxmem=7296M'], 'a slot is added and maxmem grows past a 3 GiB image');
});

t.test('memory_slots = 0 gives plain -m; vCPUs and memory from the VM resources', async (t) => {
  const r = buildQemuCommandLine(machine({ memorySlots: 0, vcpus: 2, maxVcpus: 4, memoryMiB: 1024 }), host());
  t.same(values(r.args, '-m'), ['1024M']);
  t.same(values(r.args, '-smp'), ['2,maxcpus=4,cores=1,threads=1,sockets=4']);
  t.ok(values(r.args, '-object').includes('memory-backend-file,id=mem0,size=1024M,mem-path=/dev/shm,share=on'));
});

t.test("kernel parameters: the machine's, then the caller's as given; none may hold whitespace", async (t) => {
  const r = buildQemuCommandLine(machine({ kernelParams: ['kit.init=/sbin/agent-init', 'loglevel=3', 'panic=5'] }), host());
  const p = r.kernelParams;
  t.ok(p.indexOf('panic=1') < p.indexOf('kit.init=/sbin/agent-init'));
  t.same(
    p.slice(-3),
    ['kit.init=/sbin/agent-init', 'loglevel=3', 'panic=5'],
    "the caller's (the guest kit's, then the file's) come last, so they win",
  );
  t.equal(values(r.args, '-append')[0], p.join(' '));
  t.throws(() => buildQemuCommandLine(machine({ kernelParams: ['a b'] }), host()), { code: 'E_CONFIG', message: /contains whitespace/ });
  const noImage = buildQemuCommandLine(machine({ image: undefined, initrd: undefined }), host());
  t.same(values(noImage.args, '-initrd'), []);
  t.same(values(noImage.args, '-blockdev'), []);
});

t.test('commas in paths are doubled (QEMU option escaping); ids with odd characters are made safe', async (t) => {
  const r = buildQemuCommandLine(
    machine({
      image: { ...IMAGE, source: { kind: 'file', path: '/data/a,b/rootfs.img' } },
      devices: [{ kind: 'fs-vhost-user', id: 'fs:share/1', socket: '/run/x,y.sock', tag: 'kataShared', queueSize: 1024 }],
    }),
    host(),
  );
  t.equal(JSON.parse(values(r.args, '-blockdev')[0]!).file.filename, '/data/a,b/rootfs.img', 'JSON for -blockdev: no escaping needed');
  t.ok(values(r.args, '-chardev').includes('socket,id=char-fs_share_1,path=/run/x,,y.sock'));
});

t.test('duplicate ids and a full root bus are refused with a reason', async (t) => {
  t.throws(
    () =>
      buildQemuCommandLine(
        machine({ devices: [tap('eth0', 'tap0_kata', '02:00:00:00:00:01'), tap('eth0', 'tap1_kata', '02:00:00:00:00:02')] }),
        host(),
      ),
    { code: 'E_INVALID_ARGUMENT', message: /device id eth0 is used twice/ },
  );
  const many = Array.from({ length: 30 }, (_v, i) => tap(`e${i}`, `tap${i}_kata`, `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`));
  t.throws(() => buildQemuCommandLine(machine({ devices: many }), host()), {
    code: 'E_UNSUPPORTED',
    message: /no free PCI slot on pcie\.0/,
  });
});

t.test('VFIO devices are cold-plugged by host address', async (t) => {
  const r = buildQemuCommandLine(machine({ devices: [{ kind: 'vfio', id: 'vf0', bdf: '0000:3b:00.1' }] }), host());
  t.ok(values(r.args, '-device').includes('vfio-pci,id=dev-vf0,host=0000:3b:00.1,bus=pcie.0,addr=0x04'));
});

t.test('a firmware goes in as -bios before the kernel; none leaves QEMU its default', async (t) => {
  const r = buildQemuCommandLine({ ...machine(), firmware: '/usr/share/qemu/qboot.rom' }, host());
  const i = r.args.indexOf('-bios');
  t.equal(r.args[i + 1], '/usr/share/qemu/qboot.rom');
  t.ok(i < r.args.indexOf('-kernel'), '-bios comes before -kernel');
  t.notOk(buildQemuCommandLine(machine(), host()).args.includes('-bios'), 'no firmware: no -bios');
});
