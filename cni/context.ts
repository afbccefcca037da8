import { existsSync, statfsSync } from 'node:fs';
import { isKataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { CoprocessNetlink } from '../host/netlink.js';
import { netnsRef, type NetnsRef } from '../host/netns.js';
import type { PluginContext } from '../host/plugin.js';
import { Sysfs } from '../host/sysfs.js';
import { takeEarlyHelper } from './early-helper-holder.js';
import { CNI_CODES, CniError } from './errors.js';

/**
 * The PluginContext of one CNI call. Every ip/tc command of the call goes to one `ip` and one `tc`
 * helper per namespace (CoprocessNetlink: a line written to a running helper costs a fraction of a
 * ms, a process per batch about 4), and the helpers for CNI_NETNS were started at process start
 * (early-helpers.ts). A netns under /run/netns (or /var/run/netns) is reached with `ip -n NAME`;
 * any other path (containerd's /proc/PID/ns/net) through nsenter.
 */
export function toNetnsRef(path: string, variable = 'CNI_NETNS'): NetnsRef {
  try {
    return netnsRef(path);
  } catch (e) {
    if (isKataError(e))
      throw new CniError(CNI_CODES.INVALID_ENV, `${variable} "${path}" is not a usable network namespace path: ${e.message}`);
    throw e;
  }
}

/** statfs(2) f_type of the namespace filesystem (linux/magic.h NSFS_MAGIC). */
const NSFS_MAGIC = 0x6e736673;

/**
 * A path that names a namespace: a bind mount of one (/run/netns/NAME) or /proc/PID/ns/net, both on
 * nsfs. A regular file, a directory or a device (/dev/null) is not one, whatever its name.
 */
export function isNamespaceFile(path: string): boolean {
  try {
    return statfsSync(path).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** ADD and CHECK need the namespace to exist and to be one (code 4 naming CNI_NETNS otherwise). */
export function requireNetns(path: string): NetnsRef {
  const ref = toNetnsRef(path);
  if (!existsSync(ref.path)) {
    throw new CniError(
      CNI_CODES.INVALID_ENV,
      `CNI_NETNS "${path}" does not exist: the container's network namespace is gone or was never created`,
    );
  }
  if (!isNamespaceFile(ref.path)) {
    throw new CniError(
      CNI_CODES.INVALID_ENV,
      `CNI_NETNS "${path}" is not a network namespace (a namespace is a bind mount under /run/netns or /proc/PID/ns/net); pass the container's namespace path`,
    );
  }
  return ref;
}

let shared: CoprocessNetlink | undefined;

/** The call's netlink: one set of helpers per namespace, for the whole process. */
export function cniNetlink(): CoprocessNetlink {
  // The timeout of a one-shot ip/tc command in the host layer (E_EXEC_TIMEOUT, code 102).
  shared ??= new CoprocessNetlink(2000, { ipDetails: true, adopt: takeEarlyHelper, requestTimeoutMs: 20_000 });
  return shared;
}

export function pluginContext(containerId: string, netns: NetnsRef, log: Logger, runDir: string): PluginContext {
  return { sandboxId: containerId, netns, log, netlink: cniNetlink(), sysfs: new Sysfs(), runDir };
}
