/**
 * The VM's size for a pod, as Kata sizes a sandbox from what CRI tells it (Kata's
 * CalculateSandboxSizing with static_sandbox_resource_mgmt): containerd's CRI (1.6.7 and later)
 * puts the sum of the pod's container limits, which kubelet sends as
 * PodSandboxConfig.linux.resources, into the sandbox container's annotations:
 *
 *   io.kubernetes.cri.sandbox-cpu-quota / -cpu-period  -> quota / period CPUs (2.2 for 220000/100000)
 *   io.kubernetes.cri.sandbox-memory                   -> bytes, counted in whole MiB
 *
 * Both are added to the configured default (default_vcpus, default_memory: the VM's own overhead),
 * and the vCPUs rounded up, so a pod limited to 2.2 CPUs gets 1 + 2.2 -> 4 vCPUs. The result is capped
 * at default_maxvcpus and the memory maximum, with a warning. CPU shares are not used (as in Kata).
 * Without the annotations (no limits, or a CRI before 1.6.7) the configured default applies. The VM
 * is sized once, at boot: containers added later do not resize it (no CPU or memory hotplug).
 */
import type { Logger } from '../host/log.js';
import type { SandboxConfig } from '../runtime-core/config/types.js';

const CPU_PERIOD = 'io.kubernetes.cri.sandbox-cpu-period';
const CPU_QUOTA = 'io.kubernetes.cri.sandbox-cpu-quota';
const MEMORY = 'io.kubernetes.cri.sandbox-memory';

/** A non-negative integer annotation, or 0 (absent or unusable: logged, as Kata does). */
function int(a: Record<string, string>, key: string, log: Logger): number {
  const v = a[key];
  if (v === undefined || v === '') return 0;
  if (!/^-?\d+$/.test(v)) {
    log.warn({ annotation: key, value: v }, `sandbox sizing: annotation ${key} is not an integer; ignored`);
    return 0;
  }
  return Math.max(0, Number(v));
}

export function podSizing(cfg: SandboxConfig, annotations: Record<string, string>, log: Logger): SandboxConfig {
  const period = int(annotations, CPU_PERIOD, log);
  const quota = int(annotations, CPU_QUOTA, log);
  const memMiB = Math.floor(int(annotations, MEMORY, log) / (1024 * 1024));
  const cpus = period > 0 && quota > 0 ? quota / period : 0;
  if (cpus === 0 && memMiB === 0) return cfg;
  const q = cfg.hypervisor;
  let vcpus = Math.ceil(q.vcpus + cpus);
  let memoryMiB = q.memoryMiB + memMiB;
  if (vcpus > q.maxVcpus) {
    log.warn({ wanted: vcpus, max: q.maxVcpus }, `sandbox sizing: ${vcpus} vCPUs exceed default_maxvcpus; the VM gets ${q.maxVcpus}`);
    vcpus = q.maxVcpus;
  }
  if (memoryMiB > q.maxMemoryMiB) {
    log.warn(
      { wanted: memoryMiB, max: q.maxMemoryMiB },
      `sandbox sizing: ${memoryMiB} MiB exceed the memory maximum; the VM gets ${q.maxMemoryMiB} MiB`,
    );
    memoryMiB = q.maxMemoryMiB;
  }
  log.info({ vcpus, memoryMiB, podCpus: cpus, podMemoryMiB: memMiB }, 'the VM is sized for the pod (CRI sandbox annotations)');
  return { ...cfg, hypervisor: { ...q, vcpus, memoryMiB } };
}
