import { existsSync } from 'node:fs';
import { isKataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { SpawnNetlink } from '../host/netlink.js';
import { netnsRef, type NetnsRef } from '../host/netns.js';
import type { PluginContext } from '../host/plugin.js';
import { Sysfs } from '../host/sysfs.js';
import { CNI_CODES, CniError } from './errors.js';

/**
 * The PluginContext of one CNI call. A CNI call is a short-lived process, so ip/tc are spawned per
 * batch (SpawnNetlink) rather than kept as coprocesses. A netns under /run/netns (or /var/run/netns)
 * is reached with `ip -n NAME`; any other path (containerd's /proc/PID/ns/net) through nsenter.
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

/** ADD and CHECK need the namespace to exist (code 4 naming CNI_NETNS otherwise). */
export function requireNetns(path: string): NetnsRef {
  const ref = toNetnsRef(path);
  if (!existsSync(ref.path)) {
    throw new CniError(
      CNI_CODES.INVALID_ENV,
      `CNI_NETNS "${path}" does not exist: the container's network namespace is gone or was never created`,
    );
  }
  return ref;
}

export function pluginContext(containerId: string, netns: NetnsRef, log: Logger, runDir: string): PluginContext {
  return { sandboxId: containerId, netns, log, netlink: new SpawnNetlink(), sysfs: new Sysfs(), runDir };
}
