import t from 'tap';
import type { DeviceSpec } from '../../../../host/device-specs.js';
import { defaultConfig } from '../../../../runtime-core/config/defaults.js';
import type { QemuConfig } from '../../../../runtime-core/config/types.js';
import { buildQemuCommandLine, type QemuHostFacts, type QemuMachine } from '../../../../runtime-core/hypervisor/qemu/cmdline.js';

const PATHS = { qmp: '/run/kr/sb/qmp.sock', agent: '/run/kr/sb/agent.sock', console: '/run/kr/sb/console.log' };

function cfg(over: Partial<QemuConfig> = {}): QemuConfig {
  return { ...defaultConfig().hypervisor, maxVcpus: 2, maxMemoryMiB: 4096, ...over };
}

function host(over: Partial<QemuHostFacts> = {}): QemuHostFacts {
  return { vhostNet: false, isBlockDevice: () => false, sizeBytes: () => 64 * 1024 * 1024, ...over };
}

function machine(over: Partial<QemuMachine> = {}): QemuMachine {
  return {
    sandboxId: 'sb1',
    config: cfg(),
    accel: 'tcg',
    kernel: '/kit/vmlinux',
    initrd: '/kit/initrd.img',
    image: '/kit/rootfs.img',
    devices: [],
    paths: PATHS,
    ...over,
  };
}

/** Every value given to a flag, in order. */
function values(args: string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) if (args[i] === flag) out.push(args[i + 1]!);
  return out;
}

const tap = (id: string, ifname: string, mac: string, queues = 1, vhost = true): DeviceSpec => ({
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
    'driver=raw,node-name=drive-image,read-only=on,file.driver=file,file.filename=/kit/rootfs.img,file.node-name=drive-image-file,file.read-only=on',
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
  t.same(r.layout.devices, [{ specId: 'image', kind: 'image', qdevId: 'dev-image', nodeName: 'drive-image', slot: 3, pciPath: '03' }]);
  t.equal(r.layout.rootDevice, '/dev/vda');
  t.same(r.kernelParams.slice(0, 5), ['console=ttyS0', 'quiet', 'root=/dev/vda', 'rootfstype=ext4', 'ro']);
  t.ok(r.kernelParams.includes('panic=1') && r.kernelParams.includes('random.trust_cpu=on'));
});

t.test('KVM uses the host CPU model', async (t) => {
  const r = buildQemuCommandLine(machine({ accel: 'kvm' }), host());
  t.same(values(r.args, '-machine'), ['q35,accel=kvm,memory-backend=mem0']);
  t.same(values(r.args, '-cpu'), ['host']);
});

t.test('taps are opened by name; vhost only where /dev/vhost-net exists and not disabled; multi-queue', async (t) => {
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
  const withVhost = buildQemuCommandLine(machine({ devices }), host({ vhostNet: true }));
  t.same(values(withVhost.args, '-netdev'), [
    'tap,id=net-eth0,ifname=tap0_kata,script=no,downscript=no,vhost=on',
    'tap,id=net-eth1,ifname=tap1_kata,script=no,downscript=no,vhost=on,queues=4',
  ]);
  const disabled = buildQemuCommandLine(machine({ devices, config: cfg({ disableVhostNet: true }) }), host({ vhostNet: true }));
  t.notOk(
    values(disabled.args, '-netdev').some((n) => n.includes('vhost=on')),
    'disable_vhost_net wins',
  );
  const specOff = buildQemuCommandLine(
    machine({ devices: [tap('eth0', 'tap0_kata', '02:00:00:00:00:01', 1, false)] }),
    host({ vhostNet: true }),
  );
  t.notOk(values(specOff.args, '-netdev')[0]!.includes('vhost'), 'a spec without vhost gets none');
  t.same(
    noVhost.layout.devices.filter((d) => d.kind === 'net-tap').map((d) => [d.specId, d.netdevId, d.pciPath]),
    [
      ['eth0', 'net-eth0', '04'],
      ['eth1', 'net-eth1', '05'],
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
  const r = buildQemuCommandLine(machine({ devices: [mv] }), host({ vhostNet: true }));
  t.same(values(r.args, '-netdev'), ['tap,id=net-eth0,fds=3:4,vhost=on,vhostfds=5:6']);
  t.same(r.fds, [
    { fd: 3, path: '/run/kr/sb/macvtap-eth0', purpose: 'macvtap macvtap0 queue 0' },
    { fd: 4, path: '/run/kr/sb/macvtap-eth0', purpose: 'macvtap macvtap0 queue 1' },
    { fd: 5, path: '/dev/vhost-net', purpose: 'vhost-net for macvtap0 queue 0' },
    { fd: 6, path: '/dev/vhost-net', purpose: 'vhost-net for macvtap0 queue 1' },
  ]);
  const single = buildQemuCommandLine(machine({ devices: [{ ...mv, queues: 1 }] }), host());
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

t.test('block devices: virtio-blk on the root bus, virtio-scsi on the controller, host_device for block nodes', async (t) => {
  const devices: DeviceSpec[] = [
    { kind: 'block', id: 'rootfs-c1', path: '/dev/loop7', readonly: false, driver: 'virtio-blk', format: 'raw' },
    { kind: 'block', id: 'vol1', path: '/var/lib/vol1.img', readonly: true, driver: 'virtio-scsi', format: 'raw' },
    { kind: 'block', id: 'vol2', path: '/var/lib/vol2.qcow2', readonly: false, driver: 'virtio-scsi', format: 'qcow2' },
  ];
  const r = buildQemuCommandLine(
    machine({ devices, config: cfg({ blockDeviceDriver: 'virtio-scsi' }) }),
    host({ isBlockDevice: (p) => p.startsWith('/dev/') }),
  );
  t.same(values(r.args, '-blockdev').slice(1), [
    'driver=raw,node-name=drive-rootfs-c1,read-only=off,file.driver=host_device,file.filename=/dev/loop7,file.node-name=drive-rootfs-c1-file,file.read-only=off',
    'driver=raw,node-name=drive-vol1,read-only=on,file.driver=file,file.filename=/var/lib/vol1.img,file.node-name=drive-vol1-file,file.read-only=on',
    'driver=qcow2,node-name=drive-vol2,read-only=off,file.driver=file,file.filename=/var/lib/vol2.qcow2,file.node-name=drive-vol2-file,file.read-only=off',
  ]);
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
    ],
  );
  t.equal(r.layout.scsiController, 'scsi0');
  t.equal(r.layout.nextScsiId, 2);
  const noScsi = buildQemuCommandLine(machine(), host());
  t.notOk(
    values(noScsi.args, '-device').some((d) => d.startsWith('virtio-scsi-pci')),
    'no controller with virtio-blk and no scsi devices',
  );
});

t.test('the NVDIMM image: nvdimm=on, a read-only file backend, room in maxmem, root on pmem0 with DAX', async (t) => {
  const r = buildQemuCommandLine(machine({ config: cfg({ disableImageNvdimm: false }) }), host({ sizeBytes: () => 300 * 1024 * 1024 }));
  t.same(values(r.args, '-machine'), ['q35,accel=tcg,nvdimm=on,memory-backend=mem0']);
  t.same(values(r.args, '-m'), ['512M,slots=10,maxmem=5120M'], '1 GiB extra address space (Kata) for a 300 MiB image');
  t.ok(
    values(r.args, '-object').includes(
      `memory-backend-file,id=mem-image,mem-path=/kit/rootfs.img,size=${300 * 1024 * 1024},share=on,readonly=on`,
    ),
  );
  t.ok(values(r.args, '-device').includes('nvdimm,id=dev-image,memdev=mem-image,unarmed=on'));
  t.notOk(values(r.args, '-blockdev').length, 'no virtio-blk image');
  t.same(r.kernelParams.slice(2, 6), ['root=/dev/pmem0', 'rootfstype=ext4', 'ro', 'rootflags=dax,errors=remount-ro']);
  const big = buildQemuCommandLine(
    machine({ config: cfg({ disableImageNvdimm: false, memorySlots: 0 }) }),
    host({ sizeBytes: () => 3 * 1024 * 1024 * 1024 }),
  );
  t.same(values(big.args, '-m'), ['512M,slots=1,maxmem=7296M'], 'a slot is added and maxmem grows past a 3 GiB image');
});

t.test('memory_slots = 0 gives plain -m; vCPUs and memory from the config', async (t) => {
  const r = buildQemuCommandLine(machine({ config: cfg({ memorySlots: 0, vcpus: 2, maxVcpus: 4, memoryMiB: 1024 }) }), host());
  t.same(values(r.args, '-m'), ['1024M']);
  t.same(values(r.args, '-smp'), ['2,maxcpus=4,cores=1,threads=1,sockets=4']);
  t.ok(values(r.args, '-object').includes('memory-backend-file,id=mem0,size=1024M,mem-path=/dev/shm,share=on'));
});

t.test("kernel parameters: the runtime's, then the caller's, then the file's; debug drops quiet", async (t) => {
  const r = buildQemuCommandLine(
    machine({ kernelParams: ['kit.init=/sbin/agent-init'], config: cfg({ kernelParams: ['loglevel=3', 'panic=5'] }) }),
    host(),
  );
  const p = r.kernelParams;
  t.ok(p.indexOf('panic=1') < p.indexOf('kit.init=/sbin/agent-init'));
  t.same(p.slice(-3), ['kit.init=/sbin/agent-init', 'loglevel=3', 'panic=5'], "the file's own params come last, so they win");
  t.equal(values(r.args, '-append')[0], p.join(' '));
  const dbg = buildQemuCommandLine(machine({ config: cfg({ enableDebug: true }), agentDebug: true }), host());
  t.notOk(dbg.kernelParams.includes('quiet'));
  t.ok(dbg.kernelParams.includes('debug'));
  t.ok(dbg.kernelParams.includes('kata.debug=1'));
  const noImage = buildQemuCommandLine(machine({ image: undefined, initrd: undefined }), host());
  t.notOk(
    noImage.kernelParams.some((x) => x.startsWith('root=')),
    'no root= without an image',
  );
  t.same(values(noImage.args, '-initrd'), []);
});

t.test('commas in paths are doubled (QEMU option escaping); ids with odd characters are made safe', async (t) => {
  const r = buildQemuCommandLine(
    machine({
      image: '/data/a,b/rootfs.img',
      devices: [{ kind: 'fs-vhost-user', id: 'fs:share/1', socket: '/run/x,y.sock', tag: 'kataShared', queueSize: 1024 }],
    }),
    host(),
  );
  t.ok(values(r.args, '-blockdev')[0]!.includes('file.filename=/data/a,,b/rootfs.img'));
  t.ok(values(r.args, '-chardev').includes('socket,id=char-fs_share_1,path=/run/x,,y.sock'));
});

t.test('duplicate ids and a full root bus are refused with a reason', async (t) => {
  t.throws(
    () =>
      buildQemuCommandLine(
        machine({ devices: [tap('eth0', 'tap0_kata', '02:00:00:00:00:01'), tap('eth0', 'tap1_kata', '02:00:00:00:00:02')] }),
        host(),
      ),
    { code: 'E_INVALID_ARGUMENT', message: /dev-eth0 is used twice/ },
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
