/**
 * The OCI spec the guest agent gets for a container: the bundle's spec with its root at the shared
 * rootfs (`rootfs` relative to /run/kata-containers/shared/containers/<cid>/, Kata's layout) and
 * the terminal as containerd asked; host bind mounts (a file or directory of the host: volumes,
 * kubelet's termination-log) are shared into the guest first and the mount then names the guest
 * path; CRI's pod files (/dev/shm, /etc/hosts, /etc/hostname, /etc/resolv.conf) as pod-files.ts says. The agent reworks the rest as Kata does (namespaces, hooks, devices, cgroups).
 */
import { basename } from 'node:path';
import type { OciSpec } from '../runtime-core/agent/client.js';
import { shareContainerPath } from '../runtime-core/sandbox/containers.js';
import type { Sandbox } from '../runtime-core/sandbox/sandbox.js';
import { podFileMount } from './pod-files.js';

const isBind = (m: { type?: string; options?: string[] }): boolean =>
  m.type === 'bind' || m.type === 'rbind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');

export async function guestSpec(sb: Sandbox, cid: string, spec: OciSpec, terminal: boolean): Promise<OciSpec> {
  const mounts = [];
  for (const [i, m] of (spec.mounts ?? []).entries()) {
    if (!isBind(m) || !m.source?.startsWith('/')) {
      mounts.push(m);
      continue;
    }
    const share = async (source: string, readonly: boolean): Promise<string> =>
      (await shareContainerPath(sb, cid, source, `${cid}-binds/${i}-${basename(m.destination) || 'root'}`, readonly)).guestPath;
    const pod = await podFileMount(sb, cid, m, share);
    mounts.push(pod ?? { ...m, source: await share(m.source, (m.options ?? []).includes('ro')) });
  }
  return {
    ...spec,
    root: { path: 'rootfs', ...(spec.root?.readonly ? { readonly: true } : {}) },
    ...(spec.process ? { process: { ...spec.process, terminal } } : {}),
    mounts,
  };
}
