/**
 * The parts of the nbd-client bindings that need no NBD driver: listing a server's exports
 * (nbd-client -list against nbdkit), the refusal on this host, whose kernel has no nbd module
 * (E_KERNEL_FEATURE, a real answer here, not a fake), and device picking and checking against a
 * sysfs tree in a temp dir. Connecting a real /dev/nbdN is in nbd-client-connects-devices-in-the-lab-vm.
 */
import t from 'tap';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readProcStat } from '../../host/proc.js';
import { checkKernelNbd, connectKernelNbd, freeNbdDevice, listNbdExports } from '../../host/nbd-client.js';
import { Sysfs } from '../../host/sysfs.js';
import { startNbdkit, tempDir } from '../helpers/nbd-servers.js';

t.test('listNbdExports: NBD_OPT_LIST through nbd-client -list on a unix socket', async (t) => {
  const server = await startNbdkit(t, [
    '--filter=exportname',
    'memory',
    '1M',
    'exportname=alpha',
    'exportname=beta',
    'exportname-list=explicit',
    'exportdesc=fixed:two volumes',
  ]);
  t.same(await listNbdExports({ unix: server.socket }), [
    { name: 'alpha', description: 'two volumes' },
    { name: 'beta', description: 'two volumes' },
  ]);
  await t.rejects(listNbdExports({ unix: join(server.dir, 'absent.sock') }), { code: 'E_NBD', message: /nbd-client failed/ });
});

t.test(
  'connect on a kernel without the nbd driver: E_KERNEL_FEATURE with the fix',
  { skip: existsSync('/sys/module/nbd') && 'this kernel has nbd' },
  async (t) => {
    const server = await startNbdkit(t, ['memory', '1M']);
    await t.rejects(connectKernelNbd({ server: { unix: server.socket }, exportName: '' }), {
      code: 'E_KERNEL_FEATURE',
      message: /modprobe nbd/,
    });
    await t.rejects(connectKernelNbd({ server: { unix: server.socket }, exportName: '', mode: 'persist' }), { code: 'E_KERNEL_FEATURE' });
    await t.rejects(connectKernelNbd({ server: { unix: server.socket }, exportName: '', blockSize: 3000 as 512 }), {
      code: 'E_INVALID_ARGUMENT',
    });
  },
);

function fakeSysfs(t: { teardown(fn: () => unknown): void }, devs: Record<string, { pid?: number; size?: number }>): Sysfs {
  const root = tempDir(t, 'nbd-sysfs');
  mkdirSync(join(root, 'module', 'nbd'), { recursive: true });
  for (const [name, d] of Object.entries(devs)) {
    const dir = join(root, 'block', name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'size'), `${d.size ?? 0}\n`);
    if (d.pid !== undefined) writeFileSync(join(dir, 'pid'), `${d.pid}\n`);
  }
  return new Sysfs(root);
}

t.test('freeNbdDevice picks the lowest device that is neither connected nor sized', async (t) => {
  const sysfs = fakeSysfs(t, { nbd0: { pid: 1 }, nbd1: { size: 2048 }, nbd10: {}, nbd2: {}, loop0: {} });
  t.equal(await freeNbdDevice(sysfs), '/dev/nbd2');
  await t.rejects(freeNbdDevice(fakeSysfs(t, { nbd0: { pid: 1 } })), { code: 'E_BUSY' });
  await t.rejects(freeNbdDevice(new Sysfs(tempDir(t, 'nbd-nosys'))), { code: 'E_KERNEL_FEATURE', message: /modprobe nbd/ });
});

t.test('checkKernelNbd: the pid file says connected; a recorded client must be that live process', async (t) => {
  const me = { name: 'nbd-client', pid: process.pid, startTime: readProcStat(process.pid)!.startTime, file: 'nbd-client' };
  const sysfs = fakeSysfs(t, { nbd0: { pid: process.pid, size: 2048 }, nbd1: {}, nbd2: { pid: 1, size: 8 } });
  t.same(await checkKernelNbd({ device: '/dev/nbd0' }, sysfs), {
    device: '/dev/nbd0',
    connected: true,
    pid: process.pid,
    sizeBytes: 2048 * 512,
  });
  t.match(await checkKernelNbd({ device: '/dev/nbd0', client: me }, sysfs), { connected: true, client: 'alive' });
  t.match(await checkKernelNbd({ device: '/dev/nbd1' }, sysfs), { connected: false, sizeBytes: 0 });
  t.match(
    await checkKernelNbd({ device: '/dev/nbd2', client: me }, sysfs),
    { connected: false, client: 'not-the-device-holder' },
    'the device is held by another pid',
  );
  t.match(
    await checkKernelNbd({ device: '/dev/nbd0', client: { ...me, startTime: me.startTime + 1 } }, sysfs),
    { connected: false, client: 'gone' },
    'a reused pid is not the client',
  );
  await t.rejects(checkKernelNbd({ device: '/dev/sda' }, sysfs), { code: 'E_INVALID_ARGUMENT' });
});
