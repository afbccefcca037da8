import t from 'tap';
import { firmwareFor } from '../../../../runtime-core/hypervisor/qemu/firmware.js';

t.test('an empty firmware is qboot from a data directory of QEMU when it is there, else the default', async (t) => {
  const seen: string[] = [];
  const has = (files: string[]) => (p: string) => {
    seen.push(p);
    return files.includes(p);
  };
  t.equal(firmwareFor('', '/usr/bin/qemu-system-x86_64', has(['/usr/share/qemu/qboot.rom'])), '/usr/share/qemu/qboot.rom');
  t.ok(seen.includes('/usr/share/qemu/qboot.rom'), "Debian's data directory is looked in");
  t.equal(firmwareFor('', '/usr/bin/qemu-system-x86_64', has([])), undefined, 'no qboot.rom: QEMU picks its default');
});

t.test('a configured firmware is taken as it is', async (t) => {
  t.equal(
    firmwareFor('/srv/bios-256k.bin', '/usr/bin/qemu-system-x86_64', () => false),
    '/srv/bios-256k.bin',
  );
});
