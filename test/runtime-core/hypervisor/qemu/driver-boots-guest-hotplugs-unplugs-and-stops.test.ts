/**
 * The QEMU driver against a real guest (the embedded guest kit, TCG): QEMU runs inside a test netns
 * with a tap opened by name and a macvtap passed as an fd; the guest sees both NICs; a tap and a
 * disk are hot-plugged on root ports (the guest sees them at the PCI paths the driver reported) and
 * unplugged (DEVICE_DELETED); a hotplug failing part-way leaves nothing; stop() is QMP quit. QEMU is
 * killed by PID in teardown whatever happens. Boot time is printed, not asserted.
 */
import t from 'tap';
import { mkdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../../host/exec.js';
import { silentLogger } from '../../../../host/log.js';
import { isSameProcessAlive } from '../../../../host/proc.js';
import { AgentClient } from '../../../../runtime-core/agent/client.js';
import { QemuHypervisor } from '../../../../runtime-core/hypervisor/qemu/driver.js';
import type { VmExit } from '../../../../runtime-core/hypervisor/hypervisor.js';
import { kitVmSpec } from '../../../helpers/qemu-test-vm.js';
import { tempNetns } from '../../../helpers/netns.js';
import { capturingLogger, guestKitOrSkip, tempDir } from '../../../helpers/runtime-core.js';

const MAC_TAP = '02:aa:00:00:00:01';
const MAC_MACVTAP = '02:aa:00:00:00:02';
const MAC_HOT = '02:aa:00:00:00:03';

const { kit, skip } = await guestKitOrSkip();

/** Run a shell snippet in the guest through the agent. */
async function guestSh(agent: AgentClient, script: string): Promise<string> {
  const r = await agent.exec(['sh', '-c', script], { timeoutMs: 20_000 });
  if (r.exitCode !== 0) throw new Error(`guest: ${script}: exit ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The guest's NIC with this MAC: name and the sysfs path of its PCI device. */
async function guestNic(agent: AgentClient, mac: string): Promise<{ name: string; device: string } | undefined> {
  const out = await guestSh(agent, 'for n in /sys/class/net/*; do echo "$(basename $n) $(cat $n/address) $(readlink -f $n/device)"; done');
  for (const line of out.trim().split('\n')) {
    const [name, addr, device] = line.split(' ');
    if (addr === mac) return { name: name!, device: device! };
  }
  return undefined;
}

/** "04/00" -> the sysfs device path suffix the guest should show: 0000:00:04.0/0000:XX:00.0 */
function pathMatches(sysfsDevice: string, pciPath: string): boolean {
  const slots = pciPath.split('/');
  const bdfs = sysfsDevice.split('/').filter((p) => /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(p));
  return bdfs.length === slots.length && bdfs.every((b, i) => b.slice(8, 10) === slots[i]);
}

t.test('a guest with a tap and a macvtap, hotplug and unplug of a NIC and a disk, rollback, stop', { skip }, async (t) => {
  const ns = await tempNetns(t, 'qemu');
  const dir = tempDir(t, 'drv');
  // A tap for cold plug and one for hotplug, opened by name by QEMU inside the netns.
  await run('ip', ['-n', ns.name!, 'tuntap', 'add', 'tap0_kata', 'mode', 'tap']);
  await run('ip', ['-n', ns.name!, 'tuntap', 'add', 'tap1_kata', 'mode', 'tap']);
  // A macvtap on a veth, reached through a private device node (never /dev/tapN).
  await run('ip', ['-n', ns.name!, 'link', 'add', 'krt-va', 'type', 'veth', 'peer', 'name', 'krt-vb']);
  await run('ip', [
    '-n',
    ns.name!,
    'link',
    'add',
    'link',
    'krt-va',
    'name',
    'krt-mvt',
    'address',
    MAC_MACVTAP,
    'type',
    'macvtap',
    'mode',
    'bridge',
  ]);
  await run('ip', ['-n', ns.name!, 'link', 'set', 'krt-va', 'up']);
  await run('ip', ['-n', ns.name!, 'link', 'set', 'krt-mvt', 'up']);
  const devNum = (await run('ip', ['netns', 'exec', ns.name!, 'sh', '-c', 'cat /sys/class/net/krt-mvt/macvtap/tap*/dev'])).stdout.trim();
  const [maj, min] = devNum.split(':');
  const node = join(dir, 'macvtap-krt-mvt');
  await run('mknod', ['-m', '0600', node, 'c', maj!, min!]);
  const disk = join(dir, 'hot.raw');
  writeFileSync(disk, Buffer.alloc(8 * 1024 * 1024));

  let stepFault: string | undefined;
  const vm = new QemuHypervisor({
    faults: (step) => {
      if (step === stepFault) throw new Error(`injected failure at ${step}`);
    },
  });
  const exits: VmExit[] = [];
  vm.on('exit', (e) => exits.push(e));
  const { log, lines } = capturingLogger();
  const runDir = join(dir, 'run');
  mkdirSync(runDir);
  const started = Date.now();
  t.teardown(async () => {
    const pid = vm.pid;
    if (pid && vm.running) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  await vm.start(
    kitVmSpec(kit!, {
      sandboxId: 'krt-drv',
      runDir,
      netns: ns,
      config: { memoryMiB: 512, pcieRootPorts: 2 },
      devices: [
        { kind: 'net-tap', id: 'eth0', ifname: 'tap0_kata', mac: MAC_TAP, mtu: 1500, queues: 1, vhost: false },
        { kind: 'net-macvtap', id: 'eth1', devPath: node, ifname: 'krt-mvt', mac: MAC_MACVTAP, mtu: 1500, queues: 1, vhost: false },
      ],
    }),
    { log, cacheDir: dir },
  );
  t.ok(vm.running);
  t.equal(vm.accel?.accel, 'tcg', 'TCG on this host');
  t.ok(
    lines.some((l) => /^accelerator: /.test(l.msg)),
    'accelerator choice logged',
  );
  t.equal(readlinkSync(`/proc/${vm.pid}/ns/net`), `net:[${statSync(ns.path).ino}]`, 'QEMU runs in the sandbox netns');
  t.match(vm.commandLine!.args.join(' '), /-netdev tap,id=net-eth1,fd=3 /, 'macvtap given as fd 3');

  const agent = new AgentClient({ socketPath: vm.agentEndpoint().path, log: silentLogger() });
  t.teardown(() => agent.close());
  const gone = new AbortController();
  vm.on('exit', () => gone.abort(new Error('QEMU exited')));
  await agent.waitReady(180_000, { signal: gone.signal });
  t.comment(`QEMU start -> agent ready: ${Date.now() - started} ms`);

  t.ok(await guestNic(agent, MAC_TAP), 'the guest sees the tap NIC');
  t.ok(await guestNic(agent, MAC_MACVTAP), 'the guest sees the macvtap NIC (fd passed through setpriv and nsenter)');

  // NIC hotplug on the first free root port.
  const nic = await vm.hotplug({ kind: 'net-tap', id: 'eth2', ifname: 'tap1_kata', mac: MAC_HOT, mtu: 1500, queues: 1, vhost: false });
  const rp0 = vm.rootPorts()[0]!;
  t.equal(nic.guestPciPath, `${rp0.slot.toString(16).padStart(2, '0')}/00`, 'PCI path: root port slot / 00');
  t.equal(rp0.usedBy, 'eth2');
  const hotNic = await until('the hot-plugged NIC in the guest', () => guestNic(agent, MAC_HOT));
  t.ok(pathMatches(hotNic.device, nic.guestPciPath!), `guest device ${hotNic.device} is at ${nic.guestPciPath}`);
  t.notOk(pathMatches(hotNic.device, '1e/00'), 'the path check can fail');

  // Disk hotplug on the next root port.
  const blk = await vm.hotplug({
    kind: 'block',
    id: 'vol1',
    source: { kind: 'file', path: disk },
    readonly: false,
    driver: 'virtio-blk',
    format: 'raw',
  });
  t.equal(blk.guestPciPath, `${vm.rootPorts()[1]!.slot.toString(16).padStart(2, '0')}/00`);
  const vdb = await until('the hot-plugged disk in the guest', async () => {
    const out = await guestSh(agent, 'for b in /sys/block/vd*; do echo "$(basename $b) $(readlink -f $b/device/..)"; done');
    const l = out
      .trim()
      .split('\n')
      .map((x) => x.split(' '))
      .find(([, dev]) => dev && pathMatches(dev, blk.guestPciPath!));
    return l ? l[0] : undefined;
  });
  t.equal(vdb, 'vdb', 'the guest sees the disk at the reported PCI path');

  // No root port left: the next hotplug is refused before touching QEMU.
  await t.rejects(
    vm.hotplug({ kind: 'block', id: 'vol2', source: { kind: 'file', path: disk }, readonly: true, driver: 'virtio-blk', format: 'raw' }),
    {
      code: 'E_UNSUPPORTED',
      message: /no free PCIe root port/,
    },
  );
  const nodes = await vm.monitor!.execute<{ 'node-name': string }[]>('query-named-block-nodes');
  t.notOk(
    nodes.some((n) => n['node-name'] === 'drive-vol2'),
    'the refused hotplug added no block node',
  );

  // Unplug both: DEVICE_DELETED, then backends removed; the guest loses them.
  await vm.unplug('vol1');
  await until('the disk to leave the guest', async () => ((await guestSh(agent, 'ls /sys/block')).includes('vdb') ? undefined : true));
  t.notOk(
    (await vm.monitor!.execute<{ 'node-name': string }[]>('query-named-block-nodes')).some((n) => n['node-name'] === 'drive-vol1'),
    'blockdev deleted',
  );
  await vm.unplug('eth2');
  await until('the NIC to leave the guest', async () => ((await guestNic(agent, MAC_HOT)) ? undefined : true));
  t.same(
    vm.rootPorts().map((r) => r.usedBy),
    [undefined, undefined],
    'root ports free again',
  );
  await vm.unplug('eth2');
  t.pass('unplugging again is a no-op');
  await t.rejects(vm.unplug('eth0'), { code: 'E_UNSUPPORTED', message: /cold-plugged on the q35 root bus/ });

  // A hotplug failing after each step leaves nothing: the same device plugs fine afterwards.
  const netInfo = async (): Promise<string> => vm.monitor!.execute<string>('human-monitor-command', { 'command-line': 'info network' });
  for (const step of ['hotplug:netdev-added', 'hotplug:device-added', 'hotplug:path-resolved']) {
    stepFault = step;
    await t.rejects(vm.hotplug({ kind: 'net-tap', id: 'eth2', ifname: 'tap1_kata', mac: MAC_HOT, mtu: 1500, queues: 1, vhost: false }), {
      message: `injected failure at ${step}`,
    });
    stepFault = undefined;
    t.notMatch(await netInfo(), /net-eth2/, `after a failure at ${step}: no netdev left`);
    t.notOk(
      (await vm.monitor!.execute<{ name: string }[]>('qom-list', { path: '/machine/peripheral' })).some((p) => p.name === 'dev-eth2'),
      `after a failure at ${step}: no device left`,
    );
    t.same(
      vm.rootPorts().map((r) => r.usedBy),
      [undefined, undefined],
      `after a failure at ${step}: root port released`,
    );
  }
  for (const step of ['hotplug:blockdev-added', 'hotplug:device-added']) {
    stepFault = step;
    await t.rejects(
      vm.hotplug({ kind: 'block', id: 'vol1', source: { kind: 'file', path: disk }, readonly: false, driver: 'virtio-blk', format: 'raw' }),
      {
        message: `injected failure at ${step}`,
      },
    );
    stepFault = undefined;
    t.notOk(
      (await vm.monitor!.execute<{ 'node-name': string }[]>('query-named-block-nodes')).some((n) => n['node-name'] === 'drive-vol1'),
      `after a failure at ${step}: no block node left`,
    );
  }
  const again = await vm.hotplug({ kind: 'net-tap', id: 'eth2', ifname: 'tap1_kata', mac: MAC_HOT, mtu: 1500, queues: 1, vhost: false });
  t.equal(again.guestPciPath, nic.guestPciPath, 'after the rollbacks the same hotplug works on the same port');
  await until('the NIC back in the guest', () => guestNic(agent, MAC_HOT));

  // Stop: QMP quit; an expected exit; sockets removed.
  const rec = vm.record();
  await vm.stop();
  t.notOk(vm.running);
  t.notOk(isSameProcessAlive(rec.daemon.pid, rec.daemon.startTime), 'QEMU is gone');
  t.same(exits, [{ code: 0, signal: null, expected: true }], 'one exit, expected, status 0 (quit)');
  t.throws(() => statSync(rec.files[0]!), 'QMP socket removed');
  t.throws(() => statSync(rec.agent.path), 'agent socket removed');
  await vm.stop();
  t.pass('stop again is harmless');
  await t.rejects(
    vm.hotplug({ kind: 'block', id: 'vol9', source: { kind: 'file', path: disk }, readonly: true, driver: 'virtio-blk', format: 'raw' }),
    {
      code: 'E_DAEMON_CRASHED',
    },
  );
});
