/**
 * The layout of the guest image as Kata's osbuilder writes it for an NVDIMM
 * (tools/osbuilder/image-builder/image_builder.sh `set_dax_header`, with `nsdax.gpl.c`):
 *
 *   0        MBR #1: one Linux partition from 3 MiB to 1 MiB before the end (what a guest that
 *            sees the file as a disk reads: virtio-blk, /dev/vda1)
 *   4 KiB    the PFN info block, `struct nd_pfn_sb` of the kernel's drivers/nvdimm/pfn.h: the
 *            guest's libnvdimm finds it on the raw namespace and makes the namespace an fsdax
 *            device (memmap in RAM) whose data starts 2 MiB in
 *   2 MiB    MBR #2: the same partition as seen from there (from 1 MiB on): /dev/pmem0p1
 *   3 MiB    the root file system
 *
 * The size is rounded up to 128 MiB (osbuilder's `mem_boundary_mb`), which also keeps the end of
 * the namespace aligned as the kernel's pfn validation wants it (2 MiB at least). Both MBRs
 * describe the same bytes, so one file boots either way.
 *
 * Pure functions over Buffers (tested byte by byte); rootfs.ts writes the file. Hand-written: no npm
 * package writes an nd_pfn_sb, and one MBR entry is a few lines of arithmetic.
 */

export const MiB = 1024 * 1024;
const SECTOR = 512;
/** Where the PFN info block lives in the namespace (the kernel reads it at SZ_4K). */
export const PFN_INFO_OFFSET = 4096;
const PFN_INFO_BYTES = 4096;
/** osbuilder's dax_header_sz: MBR #1 + DAX metadata; the fsdax data (MBR #2) starts here. */
export const DAX_DATA_OFFSET = 2 * MiB;
/** osbuilder's dax_alignment: 2 MiB, so DAX can map huge pages. */
export const DAX_ALIGN = 2 * MiB;
/** osbuilder's rootfs_start (1 MiB) after the DAX header: the partition's first byte in the file. */
export const PARTITION_OFFSET = 3 * MiB;
/** parted's `-1M` end: the last MiB of the image is outside the partition. */
const TAIL_BYTES = MiB;
const IMAGE_ALIGN = 128 * MiB;

/** "NVDIMM_PFN_INFO\0" (PFN_SIG); the devdax variant would be NVDIMM_DAX_INFO. */
export const PFN_SIGNATURE = Buffer.from('NVDIMM_PFN_INFO\0', 'latin1');
/** enum nd_pfn_mode: PFN_MODE_RAM keeps the struct pages in guest RAM (nothing is written to the device). */
const PFN_MODE_RAM = 1;
const MBR_TYPE_LINUX = 0x83;

export interface DaxImageLayout {
  /** Whole file, a multiple of 128 MiB. */
  imageBytes: number;
  /** The partition (and the file system in it): first byte and length, both in the file. */
  partitionOffset: number;
  partitionBytes: number;
}

/** The smallest osbuilder layout whose partition holds `fsBytes`; the partition takes all the room there is. */
export function daxImageLayout(fsBytes: number): DaxImageLayout {
  if (!Number.isSafeInteger(fsBytes) || fsBytes <= 0) throw new RangeError(`file system size ${fsBytes} is not a positive byte count`);
  const imageBytes = Math.ceil((PARTITION_OFFSET + fsBytes + TAIL_BYTES) / IMAGE_ALIGN) * IMAGE_ALIGN;
  return { imageBytes, partitionOffset: PARTITION_OFFSET, partitionBytes: imageBytes - PARTITION_OFFSET - TAIL_BYTES };
}

/**
 * The kernel's nd_fletcher64 over little-endian 32-bit words: lo32 wraps at 32 bits, hi32 is the
 * running sum of lo32; the checksum is hi32 << 32 | lo32, all modulo 2^64.
 */
export function fletcher64(buf: Buffer): bigint {
  if (buf.length % 4 !== 0) throw new RangeError('fletcher64 takes whole 32-bit words');
  let lo = 0;
  let hi = 0n;
  for (let i = 0; i < buf.length; i += 4) {
    lo = (lo + buf.readUInt32LE(i)) >>> 0;
    hi += BigInt(lo);
  }
  return ((hi << 32n) | BigInt(lo)) & 0xffff_ffff_ffff_ffffn;
}

export interface PfnInfoOptions {
  /** Size of the namespace (the whole image file). */
  namespaceBytes: number;
  dataOffset?: number;
  align?: number;
  /** The pfn device's uuid (16 bytes; default zero: the image is reproducible). */
  uuid?: Buffer;
}

/**
 * `struct nd_pfn_sb` as nsdax writes it: signature, parent_uuid zero (a label-less namespace has
 * none), version 1.2, dataoff, npfns, PFN_MODE_RAM, align; the rest zero; the checksum (the last 8
 * bytes) is fletcher64 of the block with those bytes zero. Offsets are those of drivers/nvdimm/pfn.h.
 */
export function pfnInfoBlock(o: PfnInfoOptions): Buffer {
  const dataOffset = o.dataOffset ?? DAX_DATA_OFFSET;
  const align = o.align ?? DAX_ALIGN;
  if (o.namespaceBytes <= dataOffset || o.namespaceBytes % align !== 0 || dataOffset % align !== 0) {
    throw new RangeError(`namespace of ${o.namespaceBytes} bytes cannot hold fsdax data at ${dataOffset} aligned to ${align}`);
  }
  const b = Buffer.alloc(PFN_INFO_BYTES);
  PFN_SIGNATURE.copy(b, 0); // signature[16]
  if (o.uuid) {
    if (o.uuid.length !== 16) throw new RangeError('a pfn uuid has 16 bytes');
    o.uuid.copy(b, 16); // uuid[16]
  }
  // parent_uuid[16] at 32 stays zero; flags (u32) at 48 zero.
  b.writeUInt16LE(1, 52); // version_major
  b.writeUInt16LE(2, 54); // version_minor: 2 = has align (no start_pad/end_trunc in use)
  b.writeBigUInt64LE(BigInt(dataOffset), 56); // dataoff
  b.writeBigUInt64LE(BigInt((o.namespaceBytes - dataOffset) / 4096), 64); // npfns
  b.writeUInt32LE(PFN_MODE_RAM, 72); // mode
  // start_pad (76), end_trunc (80) zero.
  b.writeUInt32LE(align, 84); // align
  // page_size (88), page_struct_size (92): version 1.4 fields, zero here (the kernel fills them in).
  b.writeBigUInt64LE(fletcher64(b), PFN_INFO_BYTES - 8);
  return b;
}

/** CHS of an LBA for an MBR entry with the usual 255-head, 63-sector geometry (0xfe 0xff 0xff past 1023 cylinders). */
function chs(lba: number): [number, number, number] {
  const c = Math.floor(lba / (255 * 63));
  if (c > 1023) return [0xfe, 0xff, 0xff];
  const h = Math.floor(lba / 63) % 255;
  const s = (lba % 63) + 1;
  return [h, ((c >> 2) & 0xc0) | s, c & 0xff];
}

/** A DOS partition table with one primary Linux partition (bytes from the start of the disk the MBR is on). */
export function mbrOneLinuxPartition(startBytes: number, lengthBytes: number, diskId = 0): Buffer {
  if (startBytes % SECTOR !== 0 || lengthBytes % SECTOR !== 0 || startBytes <= 0 || lengthBytes <= 0) {
    throw new RangeError(`partition ${startBytes}+${lengthBytes} is not made of whole sectors after the MBR`);
  }
  const first = startBytes / SECTOR;
  const count = lengthBytes / SECTOR;
  if (first + count > 0xffff_ffff) throw new RangeError('partition beyond 2 TiB: an MBR cannot describe it');
  const b = Buffer.alloc(SECTOR);
  b.writeUInt32LE(diskId >>> 0, 440);
  const e = 446;
  b[e] = 0x00; // not bootable
  Buffer.from(chs(first)).copy(b, e + 1);
  b[e + 4] = MBR_TYPE_LINUX;
  Buffer.from(chs(first + count - 1)).copy(b, e + 5);
  b.writeUInt32LE(first, e + 8);
  b.writeUInt32LE(count, e + 12);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** What goes where in the first 3 MiB of the image: MBR #1, the PFN info block, MBR #2. */
export function daxImageHeaders(layout: DaxImageLayout, diskId = 0): { offset: number; bytes: Buffer }[] {
  return [
    { offset: 0, bytes: mbrOneLinuxPartition(layout.partitionOffset, layout.partitionBytes, diskId) },
    { offset: PFN_INFO_OFFSET, bytes: pfnInfoBlock({ namespaceBytes: layout.imageBytes }) },
    {
      offset: DAX_DATA_OFFSET,
      bytes: mbrOneLinuxPartition(layout.partitionOffset - DAX_DATA_OFFSET, layout.partitionBytes, diskId),
    },
  ];
}
