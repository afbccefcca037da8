/**
 * Debian's stock kernel (linux-image-amd64) as an uncompressed vmlinux, cached by package and
 * version under <kit cache>/stock-<version>/: what `bench/boot.ts` boots as its reference (the
 * issue defines the reference as the stock kernel's bare boot), whatever kernel the kit boots.
 */
import { copyFile, mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KataError } from '../../host/errors.js';
import { acquireLock } from '../../host/file-lock.js';
import { downloadKernel, extractKernel, extractVmlinux, hasPvhNote, resolveKernelPackage, type KernelPackage } from './kernel.js';

export interface StockKernel {
  vmlinux: string;
  pkg: KernelPackage;
}

export async function ensureStockVmlinux(cacheDir: string, progress: (m: string) => void = () => {}): Promise<StockKernel> {
  const pkg = await resolveKernelPackage(progress);
  const dir = join(cacheDir, `stock-${pkg.name}_${pkg.version}`.replace(/[^A-Za-z0-9._+-]/g, '_'));
  const vmlinux = join(dir, 'vmlinux');
  if (await stat(vmlinux).catch(() => undefined)) return { vmlinux, pkg };
  await mkdir(cacheDir, { recursive: true });
  const held = await acquireLock(`${dir}.lock`, { waitMs: 30 * 60 * 1000, purpose: 'stock kernel unpack' });
  const work = await mkdtemp(join(tmpdir(), 'kr-stock-kernel-'));
  try {
    if (await stat(vmlinux).catch(() => undefined)) return { vmlinux, pkg };
    const deb = await downloadKernel(pkg, work, progress);
    const root = join(work, 'root');
    await extractKernel(deb, root, pkg.release, progress);
    const out = join(work, 'vmlinux');
    await extractVmlinux(join(root, 'boot', `vmlinuz-${pkg.release}`), out, progress);
    if (!(await hasPvhNote(out))) throw new KataError('E_KERNEL_FEATURE', `Debian's ${pkg.name} ${pkg.version} has no PVH entry note`);
    const tmp = `${dir}.${process.pid}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    await copyFile(out, join(tmp, 'vmlinux'));
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    return { vmlinux, pkg };
  } finally {
    await rm(work, { recursive: true, force: true }).catch(() => {});
    await held.release();
  }
}
