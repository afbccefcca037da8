/**
 * The kernel parameter that lets kata-init (guest/init/kata-init.c) mount the sandbox's virtio-fs
 * share at boot, before the agent starts: `kata.sharefs=TAG:MOUNTPOINT`. A mount(2) in
 * PID 1 instead of the `mount` process the agent's AddStorages runs saves 0.1-0.15 s under TCG.
 * It is made from the very Storage the host sends in AddStorages afterwards, so both say the same;
 * the agent finds the share mounted (same mount point and type) and returns at once. A Storage this
 * form cannot carry (another driver or type, mount options, characters the command line or
 * kata-init's parser cannot take) gets no parameter and is mounted by the agent as before.
 * kata-init checks the same rules and, when the value or its mount fails, leaves the share to the
 * agent.
 */
import type { Storage } from '../../host/agent-types.js';

export const SHAREFS_PARAM = 'kata.sharefs';

/** virtio-fs tags are at most 36 bytes; these characters need no quoting on the command line. */
const TAG = /^[A-Za-z0-9._-]{1,36}$/;
/** Absolute, no whitespace, no ':' (the separator), no quoting characters, under 512 bytes. */
const MOUNT_POINT = /^\/[A-Za-z0-9._/+@=-]{0,510}$/;

/** `kata.sharefs=...` for a virtio-fs Storage, or undefined when kata-init cannot mount this one. */
export function shareAtBootParam(s: Storage): string | undefined {
  if (s.driver !== 'virtio-fs' || (s.fstype !== '' && s.fstype !== 'virtiofs')) return undefined;
  // Options are left to mount(8) in the agent: some are mount flags ("ro"), not the fs's data.
  if ((s.options ?? []).some((o) => o !== '')) return undefined;
  if (!TAG.test(s.source) || !MOUNT_POINT.test(s.mount_point) || s.mount_point.split('/').includes('..')) return undefined;
  return `${SHAREFS_PARAM}=${s.source}:${s.mount_point}`;
}

/** The parameter for the first Storage of `storages` kata-init can mount (it mounts one at most). */
export function shareAtBootParams(storages: readonly Storage[]): string[] {
  for (const s of storages) {
    const p = shareAtBootParam(s);
    if (p) return [p];
  }
  return [];
}
