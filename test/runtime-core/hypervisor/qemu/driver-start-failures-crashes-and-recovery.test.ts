/**
 * The QEMU driver's edges, without waiting for a guest to boot: a QEMU that fails at start, a QEMU
 * killed behind the driver's back, a QEMU that is not asked through QMP (SIGKILL after the grace), and
 * recovery from a persisted record. Every QEMU is killed by PID in teardown.
 */
import t from 'tap';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../../host/exec.js';
import { silentLogger } from '../../../../host/log.js';
import { isSameProcessAlive } from '../../../../host/proc.js';
import type { QemuConfig } from '../../../../runtime-core/config/types.js';
import type { DeviceSpec } from '../../../../host/device-specs.js';
import { QemuHypervisor } from '../../../../runtime-core/hypervisor/qemu/driver.js';
import type { VmExit, VmSpec } from '../../../../runtime-core/hypervisor/hypervisor.js';
import { kitVmSpec } from '../../../helpers/qemu-test-vm.js';
import { tempNetns } from '../../../helpers/netns.js';
import { capturingLogger, guestKitOrSkip, tempDir } from '../../../helpers/runtime-core.js';

const { kit, skip } = await guestKitOrSkip();

interface Teardownable {
  teardown(fn: () => unknown): void;
}

function spec(
  t: Teardownable,
  over: { netns?: VmSpec['netns']; devices?: DeviceSpec[]; runDir?: string } = {},
  cfg: Partial<QemuConfig> = {},
): VmSpec {
  const dir = tempDir(t, 'drv');
  const runDir = over.runDir ?? join(dir, 'run');
  mkdirSync(runDir, { recursive: true });
  return kitVmSpec(kit!, {
    sandboxId: 'krt-edge',
    runDir,
    ...(over.netns ? { netns: over.netns } : {}),
    devices: over.devices ?? [],
    config: { memoryMiB: 256, pcieRootPorts: 1, ...cfg },
  });
}

function guard(t: Teardownable, vm: QemuHypervisor): void {
  t.teardown(() => {
    const pid = vm.pid;
    if (pid && vm.running) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
}

t.test('a QEMU that cannot start (missing disk) is E_DAEMON_START with its stderr, and leaves nothing', { skip }, async (t) => {
  const ns = await tempNetns(t, 'qemu');
  const s = spec(t, {
    netns: ns,
    devices: [
      {
        kind: 'block',
        id: 'vol',
        source: { kind: 'file', path: '/nonexistent/krt-disk.img' },
        readonly: true,
        driver: 'virtio-blk',
        format: 'raw',
      },
    ],
  });
  const vm = new QemuHypervisor();
  guard(t, vm);
  const { log } = capturingLogger();
  const err = await vm.start(s, { log }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { code: 'E_DAEMON_START', message: /QEMU for sandbox krt-edge exited at start: .*krt-disk\.img/ });
  t.notOk(vm.running);
  t.notOk(existsSync(join(s.runDir, 'qmp.sock')), 'no QMP socket left');
  t.notOk(existsSync(join(s.runDir, 'agent.sock')), 'no agent socket left');
});

t.test('a passed fd that cannot be opened fails before QEMU is spawned', { skip }, async (t) => {
  const s = spec(t, {
    devices: [
      {
        kind: 'net-macvtap',
        id: 'eth0',
        devPath: '/nonexistent/krt-macvtap',
        ifname: 'mvt0',
        mac: '02:bb:00:00:00:01',
        mtu: 1500,
        queues: 1,
        vhost: false,
      },
    ],
  });
  const vm = new QemuHypervisor();
  guard(t, vm);
  await t.rejects(vm.start(s, { log: silentLogger() }), {
    code: 'E_DAEMON_START',
    message: /cannot open \/nonexistent\/krt-macvtap for QEMU \(macvtap mvt0 queue 0\)/,
  });
  t.equal(vm.pid, undefined, 'no QEMU spawned');
});

t.test('a socket path over 107 bytes is refused before anything starts', { skip }, async (t) => {
  const s = spec(t);
  s.runDir = join(s.runDir, 'x'.repeat(100));
  const vm = new QemuHypervisor();
  await t.rejects(vm.start(s, { log: silentLogger() }), { code: 'E_SOCKET_PATH_TOO_LONG' });
  t.equal(vm.pid, undefined, 'no QEMU spawned');
});

t.test("QEMU killed behind the driver's back is an unexpected exit; later calls fail cleanly", { skip }, async (t) => {
  const vm = new QemuHypervisor();
  guard(t, vm);
  const exits: VmExit[] = [];
  vm.on('exit', (e) => exits.push(e));
  const { log, lines } = capturingLogger();
  await vm.start(spec(t), { log });
  t.match(
    vm.commandLine!.args,
    ['-name', 'sandbox-krt-edge,debug-threads=on', '-machine', 'q35,accel=tcg,memory-backend=mem0'],
    'accel = "tcg": no probe, TCG on the command line',
  );
  t.ok(lines.some((l) => /accelerator: tcg \(accel = "tcg"/.test(l.msg)));
  const exited = new Promise<VmExit>((r) => vm.once('exit', r));
  process.kill(vm.pid!, 'SIGKILL');
  t.same(await exited, { code: null, signal: 'SIGKILL', expected: false });
  t.ok(
    lines.some((l) => l.level === 50 && l.msg === 'QEMU exited unexpectedly'),
    'logged as an error',
  );
  await t.rejects(
    vm.hotplug({
      kind: 'block',
      id: 'v',
      source: { kind: 'file', path: '/dev/null' },
      readonly: true,
      driver: 'virtio-blk',
      format: 'raw',
    }),
    {
      code: 'E_DAEMON_CRASHED',
    },
  );
  await vm.stop();
  t.equal(exits.length, 1, 'stop after a crash adds no exit');
});

t.test('a QEMU that is not asked over QMP is SIGKILLed after the grace period', { skip }, async (t) => {
  const vm = new QemuHypervisor();
  guard(t, vm);
  const exits: VmExit[] = [];
  vm.on('exit', (e) => exits.push(e));
  const { log, lines } = capturingLogger();
  await vm.start(spec(t), { log });
  await vm.monitor!.close(); // no way to send quit any more
  await vm.stop({ graceMs: 300 });
  t.notOk(vm.running);
  t.same(exits, [{ code: null, signal: 'SIGKILL', expected: true }]);
  t.ok(lines.some((l) => /still running after QMP quit; sending SIGKILL/.test(l.msg)));
});

t.test('a VM known only from its record is stopped and its files removed', { skip }, async (t) => {
  const vm = new QemuHypervisor();
  guard(t, vm);
  await vm.start(spec(t), { log: silentLogger() });
  const rec = JSON.parse(JSON.stringify(vm.record())) as ReturnType<QemuHypervisor['record']>; // as persisted
  t.ok(isSameProcessAlive(rec.daemon.pid, rec.daemon.startTime));
  t.ok(existsSync(rec.files[0]!));
  await QemuHypervisor.recover(rec, silentLogger(), 1000);
  t.notOk(isSameProcessAlive(rec.daemon.pid, rec.daemon.startTime), 'QEMU gone');
  t.notOk(existsSync(rec.files[0]!), 'QMP socket removed');
  t.notOk(existsSync(rec.agent.path), 'agent socket removed');
  await QemuHypervisor.recover(rec, silentLogger(), 1000);
  t.pass('recovering twice is harmless (the pid is not signalled again)');
});

t.test('hotplug of what QEMU cannot take over QMP is refused without touching the VM', { skip }, async (t) => {
  const vm = new QemuHypervisor();
  guard(t, vm);
  await vm.start(spec(t), { log: silentLogger() });
  t.teardown(() => vm.stop({ graceMs: 1000 }));
  await t.rejects(
    vm.hotplug({
      kind: 'net-macvtap',
      id: 'm',
      devPath: '/dev/null',
      ifname: 'macvtap0',
      mac: '02:bb:00:00:00:02',
      mtu: 1500,
      queues: 1,
      vhost: false,
    }),
    { code: 'E_UNSUPPORTED', message: /SCM_RIGHTS/ },
  );
  await t.rejects(
    vm.hotplug({
      kind: 'block',
      id: 's',
      source: { kind: 'file', path: '/dev/null' },
      readonly: true,
      driver: 'virtio-scsi',
      format: 'raw',
    }),
    {
      code: 'E_UNSUPPORTED',
      message: /no virtio-scsi controller/,
    },
  );
  await t.rejects(vm.hotplug({ kind: 'fs-vhost-user', id: 'f', socket: '/x.sock', tag: 't', queueSize: 1024 }), { code: 'E_UNSUPPORTED' });
  await t.rejects(vm.unplug('image'), { code: 'E_UNSUPPORTED', message: /guest image/ });
  t.same(vm.rootPorts(), [{ id: 'rp0', slot: 4, usedBy: undefined }]);
});

t.test('virtio-scsi: the controller is there and a disk hot-plugs onto it with a scsi address', { skip }, async (t) => {
  const vm = new QemuHypervisor();
  guard(t, vm);
  const s = spec(t, {}, { blockDeviceDriver: 'virtio-scsi' });
  const disk = join(s.runDir, '..', 'scsi.raw');
  await run('truncate', ['-s', '4M', disk]);
  await vm.start(s, { log: silentLogger() });
  t.teardown(() => vm.stop({ graceMs: 1000 }));
  const r1 = await vm.hotplug({
    kind: 'block',
    id: 's1',
    source: { kind: 'file', path: disk },
    readonly: true,
    driver: 'virtio-scsi',
    format: 'raw',
  });
  t.same(r1, { id: 's1', deviceId: 'dev-s1', scsiAddr: '0:0' });
  const r2 = await vm.hotplug({
    kind: 'block',
    id: 's2',
    source: { kind: 'file', path: disk },
    readonly: true,
    driver: 'virtio-scsi',
    format: 'raw',
  });
  t.equal(r2.scsiAddr, '1:0', 'next target id');
  // SCSI unplug does not need the guest's cooperation: DEVICE_DELETED comes at once.
  await vm.unplug('s1');
  const r3 = await vm.hotplug({
    kind: 'block',
    id: 's3',
    source: { kind: 'file', path: disk },
    readonly: true,
    driver: 'virtio-scsi',
    format: 'raw',
  });
  t.equal(r3.scsiAddr, '0:0', 'a freed target id is reused');

  // A host block device (a loop device) goes in through host_device.
  const loop = (await run('losetup', ['-f', '--show', disk])).stdout.trim();
  t.teardown(() => run('losetup', ['-d', loop], { reject: false }));
  await vm.hotplug({
    kind: 'block',
    id: 'lp',
    source: { kind: 'host-device', path: loop },
    readonly: true,
    driver: 'virtio-scsi',
    format: 'raw',
  });
  const nodes = await vm.monitor!.execute<{ 'node-name': string; drv: string; file: string }[]>('query-named-block-nodes');
  t.match(
    nodes.find((n) => n['node-name'] === 'drive-lp-file' || (n.file === loop && n.drv === 'host_device')),
    { drv: 'host_device', file: loop },
  );
  await vm.unplug('lp');
  t.notOk(
    (await vm.monitor!.execute<{ file: string }[]>('query-named-block-nodes')).some((n) => n.file === loop),
    'loop device released by QEMU',
  );
});
