import { existsSync, statSync } from 'node:fs';
import { KataError } from './errors.js';
import { run } from './exec.js';
import { validateNetnsName } from './names.js';

/**
 * A network namespace as the host layer addresses it: by name (a file under /run/netns, usable
 * with `ip -n`/`tc -n`, the cheap way) or by path only (e.g. /proc/PID/ns/net, reached through
 * `nsenter --net=`, one exec more). `undefined` everywhere means the caller's own namespace.
 */
export interface NetnsRef {
  /** Name under /run/netns when there is one. */
  name?: string;
  /** Absolute path of the namespace file. */
  path: string;
}

export const NETNS_RUN_DIR = '/run/netns';

export function netnsRef(nameOrPath: string): NetnsRef {
  if (nameOrPath.includes('/')) {
    const m = /^(?:\/var)?\/run\/netns\/([^/]+)$/.exec(nameOrPath);
    if (m?.[1]) return { name: validateNetnsName(m[1]), path: `${NETNS_RUN_DIR}/${m[1]}` };
    if (!nameOrPath.startsWith('/')) {
      throw new KataError('E_INVALID_NAME', `network namespace path "${nameOrPath}" must be absolute`, { netns: nameOrPath });
    }
    return { path: nameOrPath };
  }
  const name = validateNetnsName(nameOrPath);
  return { name, path: `${NETNS_RUN_DIR}/${name}` };
}

export function netnsLabel(ns: NetnsRef | undefined): string {
  return ns === undefined ? '(host)' : (ns.name ?? ns.path);
}

export function netnsExists(ns: NetnsRef): boolean {
  return existsSync(ns.path);
}

export function assertNetnsExists(ns: NetnsRef): void {
  if (!netnsExists(ns)) {
    throw new KataError(
      'E_NETNS_NOT_FOUND',
      `network namespace ${netnsLabel(ns)} does not exist (${ns.path}); create it first or pass an existing one`,
      { netns: ns.path },
    );
  }
}

/** argv that runs `tool args...` inside ns: `tool -n NAME`, or `nsenter --net=PATH tool` for a bare path. */
export function toolArgv(tool: 'ip' | 'tc', ns: NetnsRef | undefined, args: readonly string[]): [string, string[]] {
  if (ns === undefined) return [tool, [...args]];
  if (ns.name !== undefined) return [tool, ['-n', ns.name, ...args]];
  return ['nsenter', [`--net=${ns.path}`, tool, ...args]];
}

export async function createNetns(name: string): Promise<NetnsRef> {
  const ref = netnsRef(name);
  if (netnsExists(ref)) {
    throw new KataError('E_LINK_EXISTS', `network namespace ${name} already exists; choose another name or delete it`, { netns: name });
  }
  await run('ip', ['netns', 'add', validateNetnsName(name)]);
  return ref;
}

/** Delete a named namespace; a missing one is not an error. */
export async function deleteNetns(ns: NetnsRef): Promise<void> {
  if (ns.name === undefined) return; // not ours to delete: only named namespaces are created here
  if (!netnsExists(ns)) return;
  await run('ip', ['netns', 'del', ns.name], { reject: false });
}

/** A namespace's identity: the nsfs device and inode its file resolves to (stable while it lives). */
export interface NetnsIdentity {
  dev: number;
  ino: number;
}

export function netnsIdentity(path: string): NetnsIdentity | undefined {
  try {
    const st = statSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return undefined;
  }
}

export function sameIdentity(a: NetnsIdentity | undefined, b: NetnsIdentity | undefined): boolean {
  return a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Refuse the host's namespaces: the init namespace (/proc/1/ns/net) and the caller's own. Attaching
 * there would redirect the host's own NIC into a VM (or bind a PCI NIC to vfio-pci), and a teardown
 * would act on the host's links. Returns the namespace's identity, to be recorded.
 */
export function assertNotHostNetns(ns: NetnsRef): NetnsIdentity {
  const id = netnsIdentity(ns.path);
  if (!id) {
    throw new KataError(
      'E_NETNS_NOT_FOUND',
      `network namespace ${netnsLabel(ns)} does not exist (${ns.path}); create it first or pass an existing one`,
      {
        netns: ns.path,
      },
    );
  }
  for (const [which, path] of [
    ['the host (init) network namespace', '/proc/1/ns/net'],
    ["this process's own network namespace", '/proc/self/ns/net'],
  ] as const) {
    if (sameIdentity(id, netnsIdentity(path))) {
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `network namespace ${netnsLabel(ns)} is ${which}: a sandbox would take over its links; give the pod's own namespace (or none, for a new one)`,
        { netns: ns.path },
      );
    }
  }
  return id;
}
