import { capabilitiesOf, type HypervisorCapabilities } from '../hypervisor/capabilities.js';
import type { SandboxConfig } from './types.js';

/** A configuration problem found after the types were checked: the key to change and why. */
export interface ConfigProblem {
  key: string;
  message: string;
}

/**
 * Rules across keys, and what the hypervisor can do. Returns every problem (empty = fine), each
 * naming the file key to change.
 */
export function checkRules(cfg: SandboxConfig, caps: HypervisorCapabilities = capabilitiesOf(cfg.hypervisor.kind)): ConfigProblem[] {
  const p: ConfigProblem[] = [];
  const h = cfg.hypervisor;
  const q = 'hypervisor.qemu';

  // Kata's rule: without a new netns the tap sits in the host netns; only "none" creates no veth side.
  if (cfg.runtime.disableNewNetns && cfg.runtime.internetworkingModel !== 'none') {
    p.push({
      key: 'runtime.disable_new_netns',
      message: `is true, which Kata allows only with runtime.internetworking_model = "none" (it is "${cfg.runtime.internetworkingModel}"); set internetworking_model = "none" or disable_new_netns = false`,
    });
  }
  if (h.vcpus > h.maxVcpus) {
    p.push({
      key: `${q}.default_vcpus`,
      message: `(${h.vcpus}) is above ${q}.default_maxvcpus (${h.maxVcpus}); lower it or raise default_maxvcpus`,
    });
  }
  if (h.memoryMiB > h.maxMemoryMiB) {
    p.push({
      key: `${q}.default_memory`,
      message: `(${h.memoryMiB} MiB) is above ${q}.default_maxmemory (${h.maxMemoryMiB} MiB); lower it or raise default_maxmemory`,
    });
  }
  if (!h.disableImageNvdimm && h.memorySlots === 0) {
    p.push({
      key: `${q}.memory_slots`,
      message: `is 0, but the NVDIMM guest image (disable_image_nvdimm = false) needs a memory slot; set memory_slots >= 1 or disable_image_nvdimm = true`,
    });
  }

  const sandboxProblem = seccompProblem(h.seccompSandbox);
  if (sandboxProblem) p.push({ key: `${q}.seccompsandbox`, message: sandboxProblem });

  // What the hypervisor can do.
  const name = caps.kind;
  if (!caps.driver) {
    p.push({ key: 'hypervisor', message: `${name} has no driver in this runtime; use [hypervisor.qemu]` });
  }
  if (h.sharedFs === 'virtio-fs' && !caps.vhostUserFs) {
    p.push({ key: `${q}.shared_fs`, message: `"virtio-fs" is not supported by ${name} (no vhost-user-fs device); set shared_fs = "none"` });
  }
  if (h.virtioFsCacheSizeMiB > 0 && !caps.virtioFsDax) {
    p.push({
      key: `${q}.virtio_fs_cache_size`,
      message: `(${h.virtioFsCacheSizeMiB} MiB) asks for a virtio-fs DAX window, which ${name} does not support (stock QEMU has no cache-size property); set it to 0`,
    });
  }
  if (h.networkQueues > 1 && !caps.multiqueue) {
    p.push({
      key: `${q}.network_queues`,
      message: `(${h.networkQueues}) needs multi-queue virtio-net, which ${name} does not support; set it to 1`,
    });
  }
  if (!caps.blockDrivers.includes(h.blockDeviceDriver)) {
    p.push({
      key: `${q}.block_device_driver`,
      message: `"${h.blockDeviceDriver}" is not supported by ${name} (supported: ${caps.blockDrivers.join(', ')})`,
    });
  }
  if (!h.disableImageNvdimm && !caps.nvdimm) {
    p.push({
      key: `${q}.disable_image_nvdimm`,
      message: `is false (NVDIMM guest image), which ${name} does not support; set disable_image_nvdimm = true`,
    });
  }
  if (cfg.runtime.internetworkingModel === 'macvtap' && !caps.tapFdColdplug) {
    p.push({
      key: 'runtime.internetworking_model',
      message: `"macvtap" needs the tap passed as an fd, which ${name} does not support; use "tcfilter"`,
    });
  }
  return p;
}

/** QEMU's -sandbox options (qemu-options.hx): on|off, then key=value pairs it knows. */
const SECCOMP_OPTIONS: Record<string, readonly string[]> = {
  obsolete: ['allow', 'deny'],
  elevateprivileges: ['allow', 'deny', 'children'],
  spawn: ['allow', 'deny'],
  resourcecontrol: ['allow', 'deny'],
};

function seccompProblem(v: string): string | undefined {
  if (v === '') return undefined;
  const [first, ...rest] = v.split(',');
  if (first !== 'on' && first !== 'off') return `is "${v}": QEMU's -sandbox starts with on or off (or "" for none)`;
  for (const kv of rest) {
    const [k, val] = kv.split('=');
    const allowed = SECCOMP_OPTIONS[k ?? ''];
    if (!allowed) return `is "${v}": QEMU's -sandbox has no option "${k}" (it has ${Object.keys(SECCOMP_OPTIONS).join(', ')})`;
    if (!allowed.includes(val ?? '')) return `is "${v}": ${k} takes ${allowed.join(', ')}`;
  }
  return undefined;
}
