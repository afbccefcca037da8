/**
 * The files CRI bind-mounts into every container of a pod, reworked for the VM (the choice and why):
 *
 * - `/dev/shm` (CRI's 64 MiB tmpfs of the pod, mounted on the host): the pod's shm in the guest
 *   instead, one tmpfs (an `ephemeral` storage, made once per sandbox) bound into each container,
 *   as Kata's sandbox shm. The containers of the pod share it as they share CRI's under runc;
 *   carrying a host tmpfs over virtio-fs would only add a round trip to every access.
 * - `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` (small files containerd writes once for the
 *   pod, in its own sandbox directory): a private copy per container, shared read-write from the
 *   sandbox's run directory (mode 0700). The container can edit them as under runc; its changes
 *   stay with that container (under runc they would reach the pod's file, which nothing reads back).
 *   A read-write share of containerd's own files is refused by the share boundary on a real node
 *   (/var/lib/containerd is 0711, so other users can reach them and a guest root could leave a
 *   setuid file there), and a read-only share would break programs that edit /etc/hosts.
 *
 * Every other bind (volumes, kubelet's termination-log) is shared as it is, under the boundary's
 * rules (guest-spec.ts).
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { OciSpec } from '../runtime-core/agent/client.js';
import type { Sandbox } from '../runtime-core/sandbox/sandbox.js';

type OciMount = NonNullable<OciSpec['mounts']>[number];

/** Where the pod's shm lives in the guest (Kata: /run/kata-containers/sandbox/shm). */
const GUEST_POD_SHM = '/run/kata-containers/sandbox/shm';
/** CRI's default shm size (containerd pkg/cri defaultShmSize). */
const SHM_SIZE = 64 * 1024 * 1024;
const POD_FILES = new Set(['/etc/hosts', '/etc/hostname', '/etc/resolv.conf']);

const podShm = new WeakMap<Sandbox, Promise<void>>();

function guestShm(sb: Sandbox): Promise<void> {
  let made = podShm.get(sb);
  if (!made) {
    made = sb.agent
      .addStorages([
        {
          driver: 'ephemeral',
          driver_options: [],
          source: 'shm',
          fstype: 'tmpfs',
          options: ['nosuid', 'nodev', 'noexec', 'mode=1777', `size=${SHM_SIZE}`],
          mount_point: GUEST_POD_SHM,
        },
      ])
      .then(() => undefined);
    made.catch(() => podShm.delete(sb));
    podShm.set(sb, made);
  }
  return made;
}

const filesDir = (sb: Sandbox, cid: string): string => join(sb.ctx.runDir, 'pod-files', cid);

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The guest form of one of CRI's pod binds, or undefined when `m` is not one (the caller shares it
 * as any other bind). `share` shares a host path for the container and gives its guest path.
 */
export async function podFileMount(
  sb: Sandbox,
  cid: string,
  m: OciMount,
  share: (source: string, readonly: boolean) => Promise<string>,
): Promise<OciMount | undefined> {
  if (m.destination === '/dev/shm') {
    await guestShm(sb);
    const readonly = (m.options ?? []).includes('ro');
    return { ...m, type: 'bind', source: GUEST_POD_SHM, options: ['rbind', 'nosuid', 'nodev', 'noexec', readonly ? 'ro' : 'rw'] };
  }
  if (!POD_FILES.has(m.destination) || !m.source || !isFile(m.source)) return undefined;
  const dir = filesDir(sb, cid);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const copy = join(dir, basename(m.destination));
  await copyFile(m.source, copy);
  const readonly = (m.options ?? []).includes('ro');
  return { ...m, source: await share(copy, readonly) };
}

/** Remove a container's copies (after its shares were undone). Harmless when there are none. */
export function releasePodFiles(sb: Sandbox, cid: string): Promise<void> {
  return rm(filesDir(sb, cid), { recursive: true, force: true });
}
