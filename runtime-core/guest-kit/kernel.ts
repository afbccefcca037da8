/**
 * The guest kernel: Debian's linux-image-amd64, fetched with apt (never from anywhere else),
 * unpacked with dpkg-deb, its modules indexed with depmod, and its vmlinuz turned into an
 * uncompressed vmlinux so QEMU boots it through the PVH entry (about half the boot time under TCG:
 * the bzImage's own XZ decompression is what is skipped).
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KataError, isKataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';

const KERNEL_METAPACKAGE = 'linux-image-amd64';

export interface KernelPackage {
  /** e.g. linux-image-6.1.0-56-amd64 */
  name: string;
  /** e.g. 6.1.192-2 */
  version: string;
  /** `uname -r` in the guest, e.g. 6.1.0-56-amd64 */
  release: string;
}

/** apt as root without its sandbox user (the kit is built as root, the cache is root's), quiet. */
export const APT_OPTS = ['-o', 'APT::Sandbox::User=root', '-q'];

/** "linux-image-6.1.0-56-amd64 (= 6.1.192-2), ..." -> the concrete kernel image package. */
export function parseKernelDepends(depends: string): { name: string; version?: string } | undefined {
  for (const alt of depends.split(/[,|]/)) {
    const m = /^\s*(linux-image-(\d[^\s(]*?))(-unsigned)?\s*(?:\(\s*=\s*([^)\s]+)\s*\))?\s*$/.exec(alt);
    if (m) return { name: m[1]! + (m[3] ?? ''), version: m[4] };
  }
  return undefined;
}

function field(stanza: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(stanza);
  return m?.[1]?.trim();
}

async function aptCacheShow(pkg: string): Promise<string> {
  const r = await run('apt-cache', ['show', '--no-all-versions', pkg], { reject: false, timeoutMs: 60_000 });
  return r.exitCode === 0 ? r.stdout : '';
}

export async function aptUpdate(progress: (m: string) => void): Promise<void> {
  progress('apt-get update (package lists are missing or stale)');
  await run('apt-get', [...APT_OPTS, 'update'], { timeoutMs: 600_000 });
}

/** Resolve the metapackage to the kernel image package it depends on (apt-get update only if apt knows nothing). */
export async function resolveKernelPackage(progress: (m: string) => void = () => {}): Promise<KernelPackage> {
  let meta = await aptCacheShow(KERNEL_METAPACKAGE);
  if (!meta) {
    await aptUpdate(progress);
    meta = await aptCacheShow(KERNEL_METAPACKAGE);
  }
  const dep = parseKernelDepends(field(meta, 'Depends') ?? '');
  if (!dep) {
    throw new KataError(
      'E_EXEC',
      `apt-cache does not know ${KERNEL_METAPACKAGE} or its kernel dependency; check /etc/apt/sources.list for Debian main and run apt-get update`,
    );
  }
  let version = dep.version;
  if (!version) version = field(await aptCacheShow(dep.name), 'Version');
  if (!version) throw new KataError('E_EXEC', `apt-cache has no version of ${dep.name}; run apt-get update`);
  return { name: dep.name, version, release: dep.name.replace(/^linux-image-/, '').replace(/-unsigned$/, '') };
}

/** apt-get download the package into dir; returns the .deb path. */
export async function downloadKernel(pkg: KernelPackage, dir: string, progress: (m: string) => void = () => {}): Promise<string> {
  progress(`downloading ${pkg.name} ${pkg.version} with apt-get download`);
  const attempt = (): Promise<unknown> =>
    run('apt-get', [...APT_OPTS, 'download', `${pkg.name}=${pkg.version}`], { cwd: dir, timeoutMs: 900_000 });
  try {
    await attempt();
  } catch (e) {
    // Missing or stale package lists (the version is gone from the mirror): refresh once and retry.
    const stderr = (e as { stderr?: string }).stderr ?? '';
    if (!isKataError(e, 'E_EXEC') || !/Unable to locate|Can't select|no installation candidate|Failed to fetch|404|not found/i.test(stderr))
      throw e;
    await aptUpdate(progress);
    await attempt();
  }
  const deb = (await readdir(dir)).find((f) => f.startsWith(`${pkg.name}_`) && f.endsWith('.deb'));
  if (!deb) throw new KataError('E_EXEC', `apt-get download ${pkg.name}=${pkg.version} left no .deb in ${dir}`);
  return join(dir, deb);
}

/** dpkg-deb -x, then depmod -b so modules.dep exists (a .deb ships none: postinst makes it). */
export async function extractKernel(deb: string, root: string, release: string, progress: (m: string) => void = () => {}): Promise<void> {
  progress(`extracting ${deb.split('/').pop()}`);
  await run('dpkg-deb', ['-x', deb, root], { timeoutMs: 600_000 });
  await run('depmod', ['-b', root, release], { timeoutMs: 300_000 });
}

/** Compressed payload formats a bzImage may carry, with the tool that unpacks them from stdin. */
const PAYLOADS: { name: string; magic: Buffer; argv: [string, ...string[]] }[] = [
  { name: 'xz', magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), argv: ['xz', '-dc', '--single-stream'] },
  { name: 'zstd', magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), argv: ['zstd', '-dcq'] },
  { name: 'gzip', magic: Buffer.from([0x1f, 0x8b, 0x08]), argv: ['gzip', '-dcq'] },
];

const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** Decompress `from` starting at offset into `to` with argv; resolves whatever the exit code (the caller checks the output). */
function decompressTo(
  argv: readonly string[],
  from: string,
  offset: number,
  to: string,
  timeoutMs: number,
): Promise<{ exitCode: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(to);
    out.on('error', reject);
    out.on('open', () => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', out, 'pipe'] });
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length < 4096) stderr += d;
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        out.close();
        reject(e);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        out.close(() => resolve({ exitCode: code, stderr }));
      });
      const input = createReadStream(from, { start: offset });
      input.on('error', () => child.stdin!.destroy());
      child.stdin!.on('error', () => input.destroy()); // the tool stops reading after its stream ends
      input.pipe(child.stdin!);
    });
  });
}

async function startsWithElf(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.equals(ELF);
  } finally {
    await fh.close();
  }
}

/** Offsets of every occurrence of magic in buf (a bzImage has few). */
export function findMagic(buf: Buffer, magic: Buffer): number[] {
  const out: number[] = [];
  for (let i = buf.indexOf(magic); i >= 0; i = buf.indexOf(magic, i + 1)) out.push(i);
  return out;
}

/**
 * Find the compressed kernel inside a bzImage and unpack it to an ELF vmlinux. Each candidate
 * magic is tried until the output is an ELF file; the result is checked for the PVH entry note.
 */
export async function extractVmlinux(
  vmlinuz: string,
  out: string,
  progress: (m: string) => void = () => {},
): Promise<{ format: string; offset: number }> {
  const img = await readFile(vmlinuz);
  const tried: string[] = [];
  for (const p of PAYLOADS) {
    for (const off of findMagic(img, p.magic).slice(0, 8)) {
      progress(`decompressing the kernel (${p.name} payload at byte ${off})`);
      let r;
      try {
        r = await decompressTo(p.argv, vmlinuz, off, out, 300_000);
      } catch (e) {
        tried.push(`${p.name}@${off}: ${(e as Error).message}`);
        continue;
      }
      if (await startsWithElf(out).catch(() => false)) return { format: p.name, offset: off };
      tried.push(`${p.name}@${off}: exit ${r.exitCode} ${r.stderr.trim().split('\n')[0] ?? ''}`);
    }
  }
  await rm(out, { force: true });
  throw new KataError(
    'E_UNSUPPORTED',
    `no decompressible ELF kernel found in ${vmlinuz} (tried ${tried.join('; ') || 'no known magic'}); install xz-utils`,
  );
}

/** Whether an ELF vmlinux carries the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) that QEMU's -kernel uses. */
export async function hasPvhNote(vmlinux: string): Promise<boolean> {
  const b = await readFile(vmlinux);
  if (!b.subarray(0, 4).equals(ELF) || b[4] !== 2) return false; // ELF64 only
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (b.readUInt32LE(ph) !== 4) continue; // PT_NOTE
    const off = Number(b.readBigUInt64LE(ph + 8));
    const size = Number(b.readBigUInt64LE(ph + 32));
    let p = off;
    while (p + 12 <= off + size) {
      const namesz = b.readUInt32LE(p);
      const descsz = b.readUInt32LE(p + 4);
      const type = b.readUInt32LE(p + 8);
      const name = b
        .subarray(p + 12, p + 12 + namesz)
        .toString('latin1')
        .replace(/\0+$/, '');
      if (name === 'Xen' && type === 18) return true;
      p += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}
