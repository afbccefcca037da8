import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { extractVmlinux, findMagic, hasPvhNote, parseKernelDepends } from '../../../runtime-core/guest-kit/kernel.js';

/** A minimal ELF64 with one PT_NOTE segment holding one note (name, type). */
function elfWithNote(name: string, type: number): Buffer {
  const nameBuf = Buffer.from(`${name}\0`);
  const namePad = Math.ceil(nameBuf.length / 4) * 4;
  const note = Buffer.alloc(12 + namePad + 8);
  note.writeUInt32LE(nameBuf.length, 0);
  note.writeUInt32LE(8, 4);
  note.writeUInt32LE(type, 8);
  nameBuf.copy(note, 12);
  const h = Buffer.alloc(64 + 56);
  h.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  h.writeBigUInt64LE(64n, 0x20); // e_phoff
  h.writeUInt16LE(56, 0x36); // e_phentsize
  h.writeUInt16LE(1, 0x38); // e_phnum
  h.writeUInt32LE(4, 64); // PT_NOTE
  h.writeBigUInt64LE(BigInt(h.length), 64 + 8); // p_offset
  h.writeBigUInt64LE(BigInt(note.length), 64 + 32); // p_filesz
  return Buffer.concat([h, note, Buffer.alloc(4096, 0x90)]);
}

t.test('the XZ payload is found past a false magic and unpacked to the ELF', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-vmlinux-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const elf = elfWithNote('Xen', 18);
  await writeFile(join(dir, 'payload'), elf);
  await run('xz', ['-k', '-f', join(dir, 'payload')]);
  const xz = await readFile(join(dir, 'payload.xz'));
  const falseMagic = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3, 4]);
  const bz = Buffer.concat([Buffer.alloc(3000, 0x41), falseMagic, Buffer.alloc(500, 0x42), xz, Buffer.from('trailing setup data')]);
  await writeFile(join(dir, 'vmlinuz'), bz);
  t.same(findMagic(bz, falseMagic.subarray(0, 6)), [3000, 3510]);

  const r = await extractVmlinux(join(dir, 'vmlinuz'), join(dir, 'vmlinux'));
  t.same(r, { format: 'xz', offset: 3510 }, 'the second candidate is the real one');
  t.ok((await readFile(join(dir, 'vmlinux'))).equals(elf), 'byte-identical kernel');
  t.equal(await hasPvhNote(join(dir, 'vmlinux')), true, 'Xen note type 18 = PVH entry');
});

t.test('no usable payload is E_UNSUPPORTED; an ELF without the note is not PVH', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-vmlinux-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'vmlinuz'), Buffer.alloc(10_000, 0x33));
  await t.rejects(extractVmlinux(join(dir, 'vmlinuz'), join(dir, 'vmlinux')), { code: 'E_UNSUPPORTED' });
  await writeFile(join(dir, 'other'), elfWithNote('GNU', 3));
  t.equal(await hasPvhNote(join(dir, 'other')), false);
  await writeFile(join(dir, 'xen17'), elfWithNote('Xen', 17));
  t.equal(await hasPvhNote(join(dir, 'xen17')), false, 'another Xen note type');
});

t.test('the metapackage dependency names the concrete kernel package', async (t) => {
  t.same(parseKernelDepends('linux-image-6.1.0-56-amd64 (= 6.1.192-2)'), { name: 'linux-image-6.1.0-56-amd64', version: '6.1.192-2' });
  t.same(parseKernelDepends('linux-image-6.1.0-56-amd64-unsigned (= 6.1.192-2)'), {
    name: 'linux-image-6.1.0-56-amd64-unsigned',
    version: '6.1.192-2',
  });
  t.same(parseKernelDepends('foo, linux-image-6.12.1-amd64'), { name: 'linux-image-6.12.1-amd64', version: undefined });
  t.equal(parseKernelDepends('linux-image-amd64-signed-template'), undefined);
});
