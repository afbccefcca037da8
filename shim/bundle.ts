/**
 * What the shim reads from an OCI bundle: config.json (typed errors for a missing or malformed
 * one), the grouping annotations that say which pod a container belongs to, and the shim's own
 * record beside it (which sandbox it joined, so `delete` can clean up after a crash).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../host/atomic-file.js';
import { KataError } from '../host/errors.js';
import type { OciSpec } from '../runtime-core/agent/client.js';

/** The daemon's stderr, in the bundle of the container that started it. */
export const DAEMON_STDERR = 'shim-stderr.log';

/** Where containerd's shims put their sockets (a compile-time path in containerd, not its state dir). */
export const SHIM_SOCKET_DIR = '/run/containerd/s';

export function readBundleSpec(bundle: string): OciSpec {
  let text: string;
  try {
    text = readFileSync(join(bundle, 'config.json'), 'utf8');
  } catch (e) {
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `bundle ${bundle} has no readable config.json (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      { bundle },
    );
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (e) {
    throw new KataError('E_INVALID_ARGUMENT', `bundle ${bundle}: config.json is not valid JSON (${(e as Error).message})`, { bundle });
  }
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec))
    throw new KataError('E_INVALID_ARGUMENT', `bundle ${bundle}: config.json is not an OCI spec object`, { bundle });
  const s = spec as OciSpec;
  if (s.process !== undefined && (!Array.isArray(s.process.args) || s.process.args.length === 0)) {
    throw new KataError('E_INVALID_ARGUMENT', `bundle ${bundle}: config.json process.args must be a non-empty array`, { bundle });
  }
  return s;
}

/** A container's place in a pod: the one that makes the VM (sandbox or single) or one that joins it. */
export interface Grouping {
  role: 'sandbox' | 'container' | 'single';
  sandboxId: string;
}

/**
 * Kubernetes' CRI annotations (io.kubernetes.cri.container-type / sandbox-id) and CRI-O's
 * (io.kubernetes.cri-o.ContainerType / SandboxID), the way a VM runtime tells a new VM from a
 * container in an existing one; without them a container has a VM of its own.
 */
export function groupOf(id: string, a: Record<string, string> = {}): Grouping {
  const type = a['io.kubernetes.cri.container-type'] ?? a['io.kubernetes.cri-o.ContainerType'];
  const sandbox = a['io.kubernetes.cri.sandbox-id'] ?? a['io.kubernetes.cri-o.SandboxID'];
  if (type === 'container') {
    if (!sandbox)
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `container ${id} is a pod container but names no sandbox id (io.kubernetes.cri.sandbox-id)`,
      );
    return { role: 'container', sandboxId: sandbox };
  }
  if (type === 'sandbox') return { role: 'sandbox', sandboxId: sandbox && sandbox !== '' ? sandbox : id };
  return { role: 'single', sandboxId: id };
}

/** containerd's convention (shim.SocketAddress): the socket of a group under /run/containerd/s. */
export function groupSocket(address: string, namespace: string, key: string): string {
  return join(SHIM_SOCKET_DIR, createHash('sha256').update(`${address}/${namespace}/${key}`).digest('hex'));
}

/** What the shim remembers in a bundle: the sandbox the container is in and where its state is. */
export interface BundleRecord {
  containerId: string;
  sandboxId: string;
  role: Grouping['role'];
  stateDir: string;
  configPath?: string;
}

const RECORD = 'kata-resources.json';

export function writeBundleRecord(bundle: string, rec: BundleRecord): Promise<void> {
  return writeFileAtomic(join(bundle, RECORD), `${JSON.stringify(rec)}\n`);
}

export function readBundleRecord(bundle: string): BundleRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(join(bundle, RECORD), 'utf8')) as BundleRecord;
    return typeof r.sandboxId === 'string' && typeof r.stateDir === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}
