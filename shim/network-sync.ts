/**
 * Links that a CNI plugin added to the sandbox's namespace after the VM booted (`ctr run --cni`
 * runs CNI in the task's namespace between Create and Start) are hot-plugged before the container
 * starts, through the runtime core's network hotplug. Kata does not do this (kata-containers#9340).
 */
import type { Logger } from '../host/log.js';
import { scanNetns } from '../plugins/network/scan.js';
import type { SandboxConfig } from '../runtime-core/config/types.js';
import { networkOptions } from '../runtime-core/sandbox/assemble.js';
import { addInterface } from '../runtime-core/sandbox/network-hotplug.js';
import type { Sandbox } from '../runtime-core/sandbox/sandbox.js';

export async function syncNetwork(sb: Sandbox, cfg: SandboxConfig, log: Logger): Promise<void> {
  const attached = new Set(sb.journal.records('endpoint').map((r) => r.data.resources.link));
  const scan = await scanNetns(sb.ctx);
  for (const e of scan.endpoints) {
    if (attached.has(e.link.name)) continue;
    log.info({ link: e.link.name, sandbox: sb.id }, 'a link appeared in the sandbox namespace: hot-plugging it');
    await addInterface(sb, { link: e.link.name }, networkOptions(cfg));
  }
}
