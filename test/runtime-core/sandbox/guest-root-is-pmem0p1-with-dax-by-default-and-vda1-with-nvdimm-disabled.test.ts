/**
 * Where the embedded guest's `/` lives, read in the guest itself (`/proc/mounts` through the agent,
 * via `exec`) and on QEMU's command line: by default (disable_image_nvdimm = false) the image is an
 * NVDIMM (`nvdimm=on`, a shared read-only memory-backend-file, an unarmed nvdimm device, maxmem
 * and slots for it) whose fsdax partition /dev/pmem0p1 is mounted with `dax`; with
 * disable_image_nvdimm = true it is the read-only virtio-blk disk's partition /dev/vda1, no dax.
 * The kit's kernel mounts the kit's image itself (no -initrd, init=/sbin/kata-init): the mount table
 * then names it /dev/root, so the device is checked by number (/proc/self/mountinfo against the
 * partition's /sys/class/block/<name>/dev). Two VM boots under TCG; `down` leaves nothing after each.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { cli, explain, parseJson, residue, tempRuntime, viewPids } from '../../helpers/sandbox.js';

interface View {
  id: string;
  state: string;
  pids: Record<string, number>;
}

/**
 * The /proc/self/mountinfo line of `/` (the last one: a switch_root'ed root hides the initramfs's):
 * device number, source, type and the mount's and the superblock's options together.
 */
function rootMount(mountinfo: string): { devno: string; source: string; fstype: string; options: string[] } | undefined {
  const f = mountinfo
    .trim()
    .split('\n')
    .map((l) => l.split(' '))
    .filter((x) => x[4] === '/')
    .at(-1);
  if (!f) return undefined;
  const tail = f.slice(f.indexOf('-') + 1);
  return { devno: f[2]!, source: tail[1]!, fstype: tail[0]!, options: [...f[5]!.split(','), ...(tail[2] ?? '').split(',')] };
}

for (const c of [
  { name: 'default: NVDIMM, /dev/pmem0p1 with dax', toml: '', device: '/dev/pmem0p1', dax: true },
  {
    name: 'disable_image_nvdimm = true: virtio-blk, /dev/vda1',
    toml: '[hypervisor.qemu]\ndisable_image_nvdimm = true\n',
    device: '/dev/vda1',
    dax: false,
  },
]) {
  t.test(c.name, async (t) => {
    const rt = tempRuntime(t, c.toml);
    const id = `krt-root-${c.dax ? 'pmem' : 'blk'}-${process.pid}`;
    const C = ['--config', rt.config];
    const up = await cli(['sandbox', 'up', '--id', id, ...C, '--json'], { timeoutMs: 300_000 });
    if (up.code !== 0) {
      t.fail(`sandbox up failed: ${explain(up)}`);
      await cli(['sandbox', 'down', id, ...C]);
      return;
    }
    const sb = parseJson<View>(up);
    const pids = viewPids(sb);
    try {
      t.equal(sb.state, 'running');
      const qemu = readFileSync(`/proc/${sb.pids.qemu}/cmdline`, 'utf8').split('\0');
      const machine = qemu[qemu.indexOf('-machine') + 1] ?? '';
      const mem = qemu[qemu.indexOf('-m') + 1] ?? '';
      const nvdimmDevice = qemu.some((a) => a.startsWith('nvdimm,') || a.includes('"driver":"nvdimm"'));
      const imageBackend = qemu.find((a) => a.includes('memory-backend-file') && a.includes('rootfs'));
      if (c.dax) {
        t.match(machine, /nvdimm=on/, `-machine ${machine}`);
        t.ok(nvdimmDevice, 'an nvdimm device');
        t.ok(imageBackend, `a memory-backend-file over the image: ${imageBackend}`);
        t.match(imageBackend ?? '', /share=on/, 'shared with the host (MAP_SHARED)');
        t.match(imageBackend ?? '', /readonly=on/, 'read-only');
        t.match(mem, /slots=\d+,maxmem=\d+M/, `-m ${mem}: slots and maxmem for the NVDIMM`);
      } else {
        t.notMatch(machine, /nvdimm/, `-machine ${machine}`);
        t.notOk(nvdimmDevice, 'no nvdimm device');
        t.notOk(imageBackend, 'no memory backend over the image');
      }
      t.notOk(qemu.includes('-initrd'), "no initramfs: the kit's kernel mounts the kit's image itself");

      const r = await cli(['exec', id, ...C, '--', 'cat', '/proc/self/mountinfo']);
      t.equal(r.code, 0, `exec cat /proc/self/mountinfo ${r.code === 0 ? '' : explain(r)}`);
      const root = rootMount(r.stdout);
      t.ok(root, `a mount of / in:\n${r.stdout}`);
      const part = c.device.slice('/dev/'.length);
      const devno = await cli(['exec', id, ...C, '--', 'cat', `/sys/class/block/${part}/dev`]);
      t.equal(devno.code, 0, `the guest has ${c.device}`);
      t.equal(root?.devno, devno.stdout.trim(), `the guest root is ${c.device} (${devno.stdout.trim()}, mounted as ${root?.source})`);
      t.ok(root?.source === c.device || root?.source === '/dev/root', `source ${root?.source}`);
      const cmdline = await cli(['exec', id, ...C, '--', 'cat', '/proc/cmdline']);
      t.match(cmdline.stdout, / init=\/sbin\/kata-init /, `kata-init is the kernel's init: ${cmdline.stdout.trim()}`);
      t.equal(root?.fstype, 'ext4', 'ext4');
      t.ok(root?.options.includes('ro'), `read-only: ${root?.options.join(',')}`);
      const dax = root?.options.some((o) => o === 'dax' || o.startsWith('dax=')) ?? false;
      t.equal(dax, c.dax, `dax ${c.dax ? 'in' : 'not in'} the mount options: ${root?.options.join(',')}`);
      if (c.dax) {
        const s = await cli(['exec', id, ...C, '--', 'cat', '/sys/block/pmem0/size']);
        t.equal(s.code, 0, 'the guest has a pmem0 block device');
      }
    } finally {
      const down = await cli(['sandbox', 'down', id, ...C]);
      t.equal(down.code, 0, `down exits 0 ${down.code === 0 ? '' : explain(down)}`);
    }
    t.same(await residue(rt, { id, pids }), [], 'nothing left');
  });
}
