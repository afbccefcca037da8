/**
 * The guest's kernel parameters with and without an initramfs, and kata-init itself: with the kit's
 * kernel booting the kit's image the kernel mounts the root (rootwait, init=/sbin/kata-init); with
 * an initramfs its /init does (no rootwait, no init=). kata-init builds static with the agent's
 * command compiled in, and refuses to run as anything but PID 1. (Booting it: the sandbox tests.)
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { guestKernelParams } from '../../../runtime-core/guest-kit/cmdline.js';
import { AGENT_START_PATH, GUEST_NODE, agentArgv, buildInit } from '../../../runtime-core/guest-kit/init.js';

t.test('without an initramfs the kernel waits for the root and runs kata-init', async (t) => {
  const p = guestKernelParams({ rootDevice: '/dev/pmem0p1', rootFlags: 'dax,errors=remount-ro', initramfs: false });
  for (const x of ['root=/dev/pmem0p1', 'rootfstype=ext4', 'ro', 'rootflags=dax,errors=remount-ro', 'rootwait', 'init=/sbin/kata-init'])
    t.ok(p.includes(x), x);
  t.ok(p.includes('quiet'));
});

t.test('with an initramfs its /init mounts the root: no rootwait, no init=', async (t) => {
  for (const p of [guestKernelParams({ rootDevice: '/dev/vda1' }), guestKernelParams({ rootDevice: '/dev/vda1', initramfs: true })]) {
    t.ok(p.includes('root=/dev/vda1'));
    t.notOk(p.includes('rootwait'));
    t.notOk(
      p.some((x) => x.startsWith('init=')),
      'no init=',
    );
  }
  t.ok(guestKernelParams({ rootDevice: '/dev/vda1', agentDebug: true }).includes('kata.debug=1'));
});

t.test('kata-init builds static with the agent command and refuses to run as a pid other than 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-kata-init-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bin = join(dir, 'kata-init');
  await buildInit(bin);
  const file = await run('file', [bin], { reject: false }).catch(() => undefined);
  if (file?.exitCode === 0) t.match(file.stdout, /statically linked/, 'static');
  const argv = agentArgv();
  t.equal(argv[0], GUEST_NODE);
  t.equal(argv.at(-1), AGENT_START_PATH);
  const strings = (await run('strings', [bin], { reject: false })).stdout;
  t.ok(strings.includes(AGENT_START_PATH), 'the agent start is compiled in');
  const r = await run(bin, [], { reject: false });
  t.equal(r.exitCode, 2, 'not PID 1: exits 2');
  t.match(r.stderr, /kata-init: the guest's init, not to be run as pid \d+/);
});
