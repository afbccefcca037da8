import t from 'tap';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnCount } from '../../../../host/exec.js';
import { readProcStat } from '../../../../host/proc.js';
import { chooseAccel, clearAccelMemo, probeFirmware, runAccelProbe } from '../../../../runtime-core/hypervisor/qemu/accel.js';
import { capturingLogger, tempDir, writeFile } from '../../../helpers/runtime-core.js';

const QEMU = 'qemu-system-x86_64';
const kvmPresent = existsSync('/dev/kvm');

t.test('the probe firmware is a 64 KiB ROM with the reset vector jumping to its code', async (t) => {
  const rom = probeFirmware();
  t.equal(rom.length, 65536);
  t.same([...rom.subarray(0xfff0, 0xfff5)], [0xea, 0x00, 0x00, 0x00, 0xf0], 'ljmp $0xf000,$0 at the reset vector');
  t.equal(rom.readUInt32LE(0xaa), 0xf0088, 'GDTR base points at the GDT through the 0xF0000 window');
});

t.test('under TCG the probe guest reaches long mode and exits with the known status', async (t) => {
  const { log } = capturingLogger();
  const r = await runAccelProbe(QEMU, 'tcg', log, 20_000);
  t.ok(r.ok, r.detail);
  t.match(r.detail, /reached long mode/);
});

t.test('a guest that hangs is detected at the timeout and its QEMU killed', async (t) => {
  const dir = tempDir(t, 'accel');
  const pidFile = join(dir, 'pid');
  const fake = writeFile(dir, 'hanging-qemu', `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 30\n`);
  chmodSync(fake, 0o755);
  const { log } = capturingLogger();
  const r = await runAccelProbe(fake, 'kvm', log, 300);
  t.notOk(r.ok);
  t.match(r.detail, /did not finish within 300 ms/);
  const pid = Number(readFileSync(pidFile, 'utf8'));
  const st = readProcStat(pid);
  t.ok(st === undefined || st.state === 'Z', 'the hung probe process is gone');
});

t.test('a QEMU that fails at once is reported with its exit and stderr', async (t) => {
  const dir = tempDir(t, 'accel');
  const fake = writeFile(dir, 'failing-qemu', '#!/bin/sh\necho "qemu: could not access KVM kernel module" >&2\nexit 1\n');
  chmodSync(fake, 0o755);
  const { log } = capturingLogger();
  const r = await runAccelProbe(fake, 'kvm', log, 5000);
  t.notOk(r.ok);
  t.match(r.detail, /status 1 instead of 99: qemu: could not access KVM kernel module/);
});

t.test(
  'accel = "auto" on this machine ends on TCG with a logged reason, then comes from the cache',
  { skip: kvmPresent ? false : 'no /dev/kvm here: the probe path is not reached' },
  async (t) => {
    clearAccelMemo();
    const cacheDir = tempDir(t, 'accel');
    const { log, lines } = capturingLogger();
    const before = spawnCount();
    const d = await chooseAccel({ choice: 'auto', qemuPath: QEMU, log, cacheDir });
    t.equal(d.accel, 'tcg', 'KVM does not work on this host (guests hang or QEMU aborts)');
    t.match(d.reason, /^KVM probe failed: /);
    t.equal(d.cached, false);
    t.ok(spawnCount() > before, 'a probe ran');
    const logged = lines.find((l) => /^accelerator: tcg \(KVM probe failed/.test(l.msg));
    t.ok(logged, 'the choice and its reason are logged');
    t.ok(existsSync(join(cacheDir, 'accel-probe.json')), 'result cached in the state dir');

    const mid = spawnCount();
    const again = await chooseAccel({ choice: 'auto', qemuPath: QEMU, log, cacheDir });
    t.same({ accel: again.accel, reason: again.reason, cached: again.cached }, { accel: 'tcg', reason: d.reason, cached: true });
    clearAccelMemo();
    const fromFile = await chooseAccel({ choice: 'auto', qemuPath: QEMU, log, cacheDir });
    t.equal(fromFile.cached, true, 'a new process reads the cache file');
    t.equal(spawnCount(), mid, 'no probe for cached decisions');
  },
);

t.test('accel = "tcg" skips the probe', async (t) => {
  clearAccelMemo();
  const { log, lines } = capturingLogger();
  const before = spawnCount();
  const d = await chooseAccel({ choice: 'tcg', qemuPath: QEMU, log });
  t.same(d, { accel: 'tcg', reason: 'accel = "tcg" in the configuration; no probe', cached: false });
  t.equal(spawnCount(), before, 'nothing spawned');
  t.ok(lines.some((l) => /^accelerator: tcg \(accel = "tcg"/.test(l.msg)));
});

t.test('without a usable /dev/kvm, auto picks TCG without probing', async (t) => {
  clearAccelMemo();
  const { log } = capturingLogger();
  const before = spawnCount();
  const d = await chooseAccel({ choice: 'auto', qemuPath: QEMU, log, kvmDevice: '/nonexistent/krt-kvm' });
  t.equal(d.accel, 'tcg');
  t.match(d.reason, /\/nonexistent\/krt-kvm does not exist/);
  t.equal(spawnCount(), before);
});

t.test(
  'accel = "kvm" where KVM does not work is an error, not a hanging VM',
  { skip: kvmPresent ? false : 'no /dev/kvm here' },
  async (t) => {
    clearAccelMemo();
    const { log } = capturingLogger();
    await t.rejects(chooseAccel({ choice: 'kvm', qemuPath: QEMU, log }), {
      code: 'E_KERNEL_FEATURE',
      message: /accel = "kvm" is configured but KVM does not work on this host/,
    });
  },
);
