import { statSync } from 'node:fs';
import type { BlockSpec, PmemSpec } from '../../host/device-specs.js';
import type { SandboxConfig } from '../config/types.js';
import { guestKernelParams } from '../guest-kit/cmdline.js';
import { ensureGuestKit } from '../guest-kit/index.js';

/**
 * What a sandbox boots: kernel, initrd (none when the kernel mounts the image itself), the guest
 * image as a device, and the kernel parameters the guest needs.
 */
export interface GuestImage {
  kernel: string;
  initrd?: string;
  image: PmemSpec | BlockSpec;
  /** The guest's own parameters (guest kit), then the configuration's (they come last, so they win). */
  kernelParams: string[];
}

/**
 * The guest image as a device, with the root Kata gives the kernel for it
 * (`GetKernelRootParams`): an NVDIMM (Kata's default; the image's PFN info block makes it an fsdax
 * device, its partition /dev/pmem0p1 is mounted with `dax`: no guest page cache, the pages are the
 * host's) or, with disable_image_nvdimm, a read-only virtio-blk disk (the first disk, its partition
 * /dev/vda1; no dax). Kata's rootflags also carry `data=ordered`, a journal option: the kit's image
 * has no journal (it is never written), and ext4 refuses data= without one.
 */
function imageDevice(path: string, nvdimm: boolean): { spec: PmemSpec | BlockSpec; rootDevice: string; rootFlags?: string } {
  if (nvdimm)
    return { spec: { kind: 'pmem', id: 'image', path, readonly: true }, rootDevice: '/dev/pmem0p1', rootFlags: 'dax,errors=remount-ro' };
  let isBlock = false;
  try {
    isBlock = statSync(path).isBlockDevice();
  } catch {
    isBlock = false;
  }
  const spec: BlockSpec = {
    kind: 'block',
    id: 'image',
    source: { kind: isBlock ? 'host-device' : 'file', path },
    readonly: true,
    driver: 'virtio-blk',
    format: 'raw',
  };
  return { spec, rootDevice: '/dev/vda1' };
}

/**
 * The kernel, initrd and rootfs a sandbox boots: each the config's when it names it, else the
 * embedded guest kit's (built on first use, then cached). The kit's own kernel (every driver built
 * in) booting the kit's own image needs no initramfs: the kernel mounts the image and runs kata-init
 * on it (0.1-0.2 s less under TCG than unpacking the initramfs and running its script). Otherwise
 * (Debian's stock kernel, which needs its modules; a kernel or an image the config names, Kata's own
 * form among them) the kit's initrd, whose /init loads the modules, mounts the image (waiting 30 s
 * at most for its device, saying why it cannot) and starts kata-init on it.
 */
export async function resolveGuestImage(cfg: SandboxConfig, progress: (m: string) => void = () => {}): Promise<GuestImage> {
  const q = cfg.hypervisor;
  const kit =
    q.kernel !== undefined && q.initrd !== undefined && q.image !== undefined ? undefined : await ensureGuestKit({ onProgress: progress });
  const direct = q.kernel === undefined && q.initrd === undefined && q.image === undefined && kit!.kernelSource === 'built';
  const files = { kernel: q.kernel ?? kit!.kernel, initrd: direct ? undefined : (q.initrd ?? kit!.initrd), image: q.image ?? kit!.rootfs };
  const dev = imageDevice(files.image, !q.disableImageNvdimm);
  const params = guestKernelParams({
    rootDevice: dev.rootDevice,
    rootFsType: q.rootfsType,
    ...(dev.rootFlags ? { rootFlags: dev.rootFlags } : {}),
    initramfs: !direct,
    debug: q.enableDebug,
    agentDebug: cfg.agent.enableDebug,
  });
  return { kernel: files.kernel, initrd: files.initrd, image: dev.spec, kernelParams: [...params, ...q.kernelParams] };
}
