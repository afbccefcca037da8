/**
 * What a CRI rig can have left of ours after its pods were removed, as a list (empty = clean): a
 * VM or virtiofsd, a shim, a network namespace (and with it its taps), a host-side veth, a
 * mount in containerd's mount namespace, a kata-cni attachment record, an IPAM lease, sandbox state
 * or run directories, a sandbox cgroup. Processes get a few seconds to finish exiting.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupHierarchies } from '../../../host/cgroups.js';
import { namesIn } from '../../cni/helpers/inspect.js';
import { processesMentioning, waitFor } from '../../helpers/sandbox.js';
import type { CriRig } from './cri-rig.js';

const SHIM = 'containerd-shim-kata-resources-v2';

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out;
}

function entries(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/** The shims of this rig's containerd (their command line names its socket). */
export function shimsOf(r: CriRig): number[] {
  return processesMentioning(r.c.socket)
    .filter((p) => p.cmdline.includes(SHIM))
    .map((p) => p.pid);
}

export async function criResidue(r: CriRig, opts: { kataCni: boolean }): Promise<string[]> {
  const left: string[] = [];
  await waitFor(() => processesMentioning(r.stateDir).length === 0 && shimsOf(r).length === 0, 15_000).catch(() => {});
  for (const p of processesMentioning(r.stateDir)) left.push(`process ${p.pid}: ${p.cmdline.slice(0, 120)}`);
  for (const pid of shimsOf(r)) left.push(`shim process ${pid}`);
  // CRI's pod namespaces (cni-<uuid>) in containerd's /run (an overlay on the host's: other names are the host's).
  const netns = (await r.c.inMnt('sh', ['-c', 'ls -A /run/netns 2>/dev/null || true'])).split('\n').filter((n) => n.startsWith('cni-'));
  if (netns.length > 0) left.push(`network namespaces: ${netns.join(', ')}`);
  const hostLinks = (await namesIn(r.hostNs)).filter((l) => l !== 'lo' && !l.startsWith('krtbr'));
  if (hostLinks.length > 0) left.push(`host-side links: ${hostLinks.join(', ')}`);
  const mounts = readFileSync(`/proc/${r.c.pid}/mountinfo`, 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(r.stateDir) || m.includes('/io.containerd.runtime.v2.task/') || m.includes('/io.containerd.grpc.v1.cri/'));
  if (mounts.length > 0) left.push(`mounts: ${mounts.join(', ')}`);
  if (opts.kataCni) {
    const recs = filesUnder(r.kataCniState).filter((f) => f.endsWith('.json'));
    if (recs.length > 0) left.push(`kata-cni records: ${recs.join(', ')}`);
  }
  const leases = filesUnder(r.ipamDir).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f));
  if (leases.length > 0) left.push(`IPAM leases: ${leases.join(', ')}`);
  for (const d of ['sandboxes', 'run']) {
    const e = entries(join(r.stateDir, d));
    if (e.length > 0) left.push(`state ${d}/: ${e.join(', ')}`);
  }
  // The pod cgroups (kubelet's, made by the rig) may stay until the rig's teardown; nothing below them may.
  for (const h of cgroupHierarchies()) {
    const parent = join(h.mount, r.cgroupParent);
    for (const pod of subdirs(parent)) {
      const inner = subdirs(join(parent, pod));
      if (inner.length > 0) left.push(`cgroups in ${join(parent, pod)}: ${inner.join(', ')}`);
    }
  }
  return left;
}
