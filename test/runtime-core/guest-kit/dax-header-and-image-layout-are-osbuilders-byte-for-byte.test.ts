/**
 * The NVDIMM image layout of osbuilder (image_builder.sh set_dax_header + nsdax.gpl.c) and the
 * kernel's struct nd_pfn_sb (drivers/nvdimm/pfn.h), checked byte by byte: signature, field offsets,
 * the fletcher64 checksum (recomputed here independently, as nd_pfn_validate does), both MBRs, and an
 * image built for real with mkfs.ext4 whose file system sits at 3 MiB.
 */
import t from 'tap';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import {
  MiB,
  daxImageHeaders,
  daxImageLayout,
  fletcher64,
  mbrOneLinuxPartition,
  pfnInfoBlock,
} from '../../../runtime-core/guest-kit/dax-image.js';
import { makeRootfsImage } from '../../../runtime-core/guest-kit/rootfs.js';

/** The kernel's nd_fletcher64, written out with plain modular arithmetic (not the module's code). */
function referenceFletcher64(b: Buffer): bigint {
  const M32 = 2n ** 32n;
  const M64 = 2n ** 64n;
  let lo = 0n;
  let hi = 0n;
  for (let i = 0; i < b.length; i += 4) {
    const w = BigInt(b[i]!) + BigInt(b[i + 1]!) * 256n + BigInt(b[i + 2]!) * 65536n + BigInt(b[i + 3]!) * 16777216n;
    lo = (lo + w) % M32;
    hi = (hi + lo) % M64;
  }
  return ((hi * M32) % M64) + lo;
}

t.test('fletcher64 is the kernel sum of 32-bit little-endian words', async (t) => {
  const words = (...w: number[]): Buffer => {
    const b = Buffer.alloc(w.length * 4);
    for (const [i, x] of w.entries()) b.writeUInt32LE(x, i * 4);
    return b;
  };
  t.equal(fletcher64(words(1, 2, 3)), (10n << 32n) | 6n, 'lo = 1+2+3, hi = 1+3+6');
  t.equal(fletcher64(words(0xffffffff, 1)), (0xffffffffn << 32n) | 0n, 'lo wraps at 32 bits, hi keeps the sum');
  t.equal(fletcher64(Buffer.alloc(4096)), 0n, 'zeros sum to zero');
  const random = Buffer.alloc(4096);
  for (let i = 0; i < random.length; i++) random[i] = (i * 131 + 7) & 0xff;
  t.equal(fletcher64(random), referenceFletcher64(random), 'agrees with the reference over a whole block');
  t.throws(() => fletcher64(Buffer.alloc(5)), RangeError, 'only whole words');
});

t.test('the PFN info block has nd_pfn_sb fields at the kernel offsets and a checksum nd_pfn_validate accepts', async (t) => {
  const ns = 128 * MiB;
  const b = pfnInfoBlock({ namespaceBytes: ns });
  t.equal(b.length, 4096, 'one 4 KiB block');
  t.equal(b.subarray(0, 16).toString('latin1'), 'NVDIMM_PFN_INFO\0', 'signature[16] at 0');
  t.ok(b.subarray(16, 48).equals(Buffer.alloc(32)), 'uuid and parent_uuid zero (a label-less namespace has a null uuid)');
  t.equal(b.readUInt32LE(48), 0, 'flags');
  t.equal(b.readUInt16LE(52), 1, 'version_major 1');
  t.equal(b.readUInt16LE(54), 2, 'version_minor 2 (align is recorded)');
  t.equal(b.readBigUInt64LE(56), BigInt(2 * MiB), 'dataoff = 2 MiB (dax_header_sz)');
  t.equal(b.readBigUInt64LE(64), BigInt((ns - 2 * MiB) / 4096), 'npfns: 4 KiB pages after dataoff');
  t.equal(b.readUInt32LE(72), 1, 'mode = PFN_MODE_RAM');
  t.equal(b.readUInt32LE(76), 0, 'start_pad');
  t.equal(b.readUInt32LE(80), 0, 'end_trunc');
  t.equal(b.readUInt32LE(84), 2 * MiB, 'align = 2 MiB (dax_alignment)');
  t.ok(b.subarray(88, 4088).equals(Buffer.alloc(4000)), 'page_size, page_struct_size and padding zero');
  // nd_pfn_validate: save the checksum, zero it, fletcher64 over the block, compare.
  const stored = b.readBigUInt64LE(4088);
  const copy = Buffer.from(b);
  copy.fill(0, 4088);
  t.equal(stored, referenceFletcher64(copy), 'checksum at 4088 = fletcher64 of the block with the checksum zeroed');
  t.not(stored, 0n, 'the checksum is not trivially zero');
  const flipped = Buffer.from(copy);
  flipped[60] = flipped[60]! ^ 1;
  t.not(referenceFletcher64(flipped), stored, 'a changed field changes the checksum');

  t.ok(
    pfnInfoBlock({ namespaceBytes: ns, uuid: Buffer.alloc(16, 0xab) })
      .subarray(16, 32)
      .equals(Buffer.alloc(16, 0xab)),
    'uuid at 16',
  );
  t.throws(() => pfnInfoBlock({ namespaceBytes: ns + 4096 }), RangeError, 'a namespace end off the 2 MiB alignment is refused');
  t.throws(() => pfnInfoBlock({ namespaceBytes: 2 * MiB }), RangeError, 'no room after dataoff');
});

t.test('the layout rounds to 128 MiB with the partition from 3 MiB to 1 MiB before the end', async (t) => {
  t.same(daxImageLayout(100 * MiB), { imageBytes: 128 * MiB, partitionOffset: 3 * MiB, partitionBytes: 124 * MiB });
  t.same(daxImageLayout(124 * MiB), { imageBytes: 128 * MiB, partitionOffset: 3 * MiB, partitionBytes: 124 * MiB }, 'exactly full');
  t.equal(daxImageLayout(124 * MiB + 1).imageBytes, 256 * MiB, 'one byte more: the next 128 MiB');
  t.equal(daxImageLayout(1).partitionBytes, 124 * MiB, 'the partition takes all the room');
  t.throws(() => daxImageLayout(0), RangeError);
});

t.test('MBR #1 and MBR #2 describe the same bytes from the file and from the fsdax data start', async (t) => {
  const layout = daxImageLayout(200 * MiB);
  const h = daxImageHeaders(layout, 0x12345678);
  t.same(
    h.map((x) => [x.offset, x.bytes.length]),
    [
      [0, 512],
      [4096, 4096],
      [2 * MiB, 512],
    ],
    'MBR #1 at 0, the PFN info block at 4 KiB, MBR #2 at 2 MiB',
  );
  const entry = (mbr: Buffer): { type: number; status: number; first: number; count: number; sig: string; id: number } => ({
    status: mbr[446]!,
    type: mbr[450]!,
    first: mbr.readUInt32LE(454),
    count: mbr.readUInt32LE(458),
    sig: mbr.subarray(510, 512).toString('hex'),
    id: mbr.readUInt32LE(440),
  });
  const sectors = (256 - 4) * 2048;
  t.same(
    entry(h[0]!.bytes),
    { status: 0, type: 0x83, first: 3 * 2048, count: sectors, sig: '55aa', id: 0x12345678 },
    'MBR #1: LBA 6144 (3 MiB)',
  );
  t.same(
    entry(h[2]!.bytes),
    { status: 0, type: 0x83, first: 2048, count: sectors, sig: '55aa', id: 0x12345678 },
    'MBR #2: LBA 2048 of the data (3 MiB of the file)',
  );
  for (const m of [h[0]!.bytes, h[2]!.bytes]) {
    t.ok(m.subarray(462, 510).equals(Buffer.alloc(48)), 'entries 2-4 empty');
    t.ok(m.subarray(0, 440).equals(Buffer.alloc(440)), 'no boot code');
  }
  t.same([...h[0]!.bytes.subarray(447, 450)], [0x61, 0x22, 0x00], 'CHS of LBA 6144 with 255 heads, 63 sectors: h 97, s 34, c 0');
  t.same(
    [...mbrOneLinuxPartition(3 * MiB, 9000 * MiB).subarray(451, 454)],
    [0xfe, 0xff, 0xff],
    'CHS past cylinder 1023 is the 0xfeffff marker',
  );
  t.throws(() => mbrOneLinuxPartition(100, 4096), RangeError, 'whole sectors only');
});

t.test('makeRootfsImage writes ext4 at 3 MiB behind both MBRs and the PFN info block, with /dev/console', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-dax-img-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const stage = join(dir, 'stage');
  await mkdir(join(stage, 'etc'), { recursive: true });
  await writeFile(join(stage, 'etc', 'hostname'), 'kata-guest\n');
  const image = join(dir, 'rootfs.img');
  const { imageMiB } = await makeRootfsImage(stage, image);
  t.equal(imageMiB, 128, 'a small tree fits the first 128 MiB');
  t.equal((await stat(image)).size, 128 * MiB, 'file size as laid out');
  const fh = await open(image, 'r');
  const read = async (pos: number, len: number): Promise<Buffer> => {
    const b = Buffer.alloc(len);
    await fh.read(b, 0, len, pos);
    return b;
  };
  try {
    const layout = daxImageLayout(1);
    const [mbr1, pfn, mbr2] = daxImageHeaders(layout);
    t.ok((await read(0, 512)).equals(mbr1!.bytes), 'MBR #1 at 0');
    t.ok((await read(4096, 4096)).equals(pfn!.bytes), 'PFN info block at 4 KiB');
    t.ok((await read(2 * MiB, 512)).equals(mbr2!.bytes), 'MBR #2 at 2 MiB');
    const sb = await read(3 * MiB + 1024, 1024);
    t.equal(sb.readUInt16LE(0x38), 0xef53, 'ext4 superblock magic at 3 MiB + 1 KiB');
    t.equal(sb.readUInt32LE(0x04) * 4096, layout.partitionBytes, 'the file system fills the partition (4 KiB blocks)');
    t.equal(sb.readUInt32LE(0x5c) & 0x4, 0, 'no journal (has_journal off)');
  } finally {
    await fh.close();
  }
  const cat = await run('debugfs', ['-R', 'cat /etc/hostname', `${image}?offset=${3 * MiB}`]);
  t.equal(cat.stdout, 'kata-guest\n', 'the staged tree is in the file system at the partition offset');
  const console = await run('debugfs', ['-R', 'stat /dev/console', `${image}?offset=${3 * MiB}`]);
  t.match(console.stdout, /Type: character special\s+Mode:\s+0600/, '/dev/console for the kernel to open before init');
  t.match(console.stdout, /Device major\/minor number: 05:01/, 'the console device, 5:1');
  const fsck = await run('e2fsck', ['-fn', `${image}?offset=${3 * MiB}`], { reject: false });
  t.equal(fsck.exitCode, 0, `e2fsck finds the file system clean: ${fsck.stdout}${fsck.stderr}`);
});
