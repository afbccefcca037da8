import { KataError } from '../../host/errors.js';
import type { SandboxConfig } from '../config/types.js';
import { ensureGuestKit } from '../guest-kit/index.js';
import type { GuestImage } from './sandbox.js';

/**
 * The kernel, initrd and rootfs a sandbox boots: the config's when it names all three, else the
 * embedded guest kit (built on first use, then cached). Kernel parameters: none of our own; the
 * QEMU driver's base parameters cover what the kit's initramfs reads (root=, rootfstype=, ...) and
 * it appends the configuration's, so they win.
 */
export async function resolveGuestImage(cfg: SandboxConfig, progress: (m: string) => void = () => {}): Promise<GuestImage> {
  const q = cfg.hypervisor;
  const given = [q.kernel, q.initrd, q.image].filter((x) => x !== undefined).length;
  if (given === 3) {
    return { kernel: q.kernel!, initrd: q.initrd!, image: q.image!, kernelParams: [] };
  }
  if (given !== 0) {
    throw new KataError(
      'E_CONFIG',
      `${cfg.source ?? 'configuration'}: hypervisor.qemu kernel, initrd and image go together (set all three, or none to use the embedded guest kit)`,
    );
  }
  const kit = await ensureGuestKit({ onProgress: progress });
  return { kernel: kit.kernel, initrd: kit.initrd, image: kit.rootfs, kernelParams: [] };
}
