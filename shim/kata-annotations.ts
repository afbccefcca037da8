/**
 * Kata's per-pod configuration annotations (Kata's docs/how-to/how-to-set-sandbox-config-kata.md),
 * applied to the sandbox configuration before the VM is sized and booted. containerd passes them
 * on when the runtime's `pod_annotations` lists them (the README's CRI block does).
 *
 * - `io.katacontainers.config.hypervisor.NAME` is applied only when NAME is enabled by the file's
 *   `enable_annotations` (regular expressions, each matched against the whole NAME, as Kata
 *   restricts them). A hypervisor annotation that is not enabled fails the pod with E_CONFIG naming
 *   it and the key to change: Kata refuses it too, and a pod asking for a VM it does not get should
 *   not start silently.
 * - `io.katacontainers.config.runtime.NAME` is not restricted (as in Kata).
 * - Values are checked: a bad one fails the pod with E_CONFIG naming annotation, value and what is
 *   expected. Nothing has been made yet when this runs, so nothing is left behind.
 * - Names Kata knows that this runtime does not apply (firmware, hashes, 9p, agent tracing, ...) are
 *   logged as a warning and ignored, like the not-applied keys of the file. The restricted ones
 *   that choose host binaries or paths (path, jailer_path, virtio_fs_daemon, entropy_source,
 *   vhost_user_store_path, ctlpath) are refused even when enabled: this runtime does not check
 *   them against the valid_* globs, so it does not take them at all.
 */
import { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import type { SandboxConfig } from '../runtime-core/config/types.js';

const HYPERVISOR = 'io.katacontainers.config.hypervisor.';
const RUNTIME = 'io.katacontainers.config.runtime.';
const OTHER = 'io.katacontainers.config.';

type Apply = (c: SandboxConfig, v: string, bad: (expected: string) => never) => void;

function posInt(v: string, bad: (e: string) => never, min = 1): number {
  if (!/^\d+$/.test(v) || Number(v) < min) bad(`an integer >= ${min}`);
  return Number(v);
}

function oneOf<T extends string>(v: string, allowed: readonly T[], bad: (e: string) => never): T {
  if (!(allowed as readonly string[]).includes(v)) bad(allowed.join(', ').replace(/, ([^,]*)$/, ' or $1'));
  return v as T;
}

function bool(v: string, bad: (e: string) => never): boolean {
  if (v !== 'true' && v !== 'false') bad('true or false');
  return v === 'true';
}

const HYPERVISOR_KEYS: Readonly<Record<string, Apply>> = {
  default_vcpus: (c, v, bad) => {
    // Kata takes a float32 and gives the VM whole vCPUs.
    if (!/^\d+(\.\d+)?$/.test(v) || Number(v) <= 0) bad('a number of vCPUs > 0');
    c.hypervisor.vcpus = Math.ceil(Number(v));
  },
  default_max_vcpus: (c, v, bad) => {
    c.hypervisor.maxVcpus = posInt(v, bad);
  },
  default_memory: (c, v, bad) => {
    c.hypervisor.memoryMiB = posInt(v, bad, 128);
  },
  kernel_params: (c, v) => {
    c.hypervisor.kernelParams = [...c.hypervisor.kernelParams, ...v.split(/\s+/).filter((s) => s !== '')];
  },
  disable_image_nvdimm: (c, v, bad) => {
    c.hypervisor.disableImageNvdimm = bool(v, bad);
  },
  block_device_driver: (c, v, bad) => {
    c.hypervisor.blockDeviceDriver = oneOf(v, ['virtio-blk', 'virtio-scsi'] as const, bad);
  },
  virtio_fs_cache: (c, v, bad) => {
    c.hypervisor.virtioFsCache = oneOf(v, ['never', 'metadata', 'auto', 'always'] as const, bad);
  },
  enable_debug: (c, v, bad) => {
    c.hypervisor.enableDebug = bool(v, bad);
  },
};

const RUNTIME_KEYS: Readonly<Record<string, Apply>> = {
  sandbox_cgroup_only: (c, v, bad) => {
    c.runtime.sandboxCgroupOnly = bool(v, bad);
  },
  internetworking_model: (c, v, bad) => {
    c.runtime.internetworkingModel = oneOf(v, ['tcfilter', 'macvtap', 'none'] as const, bad);
  },
  enable_debug: (c, v, bad) => {
    c.runtime.enableDebug = bool(v, bad);
  },
};

/** Restricted in Kata (host binaries and paths, checked there against valid_* globs): never taken here. */
const REFUSED = new Set(['path', 'jailer_path', 'ctlpath', 'virtio_fs_daemon', 'entropy_source', 'vhost_user_store_path']);

function enabled(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => {
    try {
      return new RegExp(`^(?:${p})$`).test(name);
    } catch {
      return false; // the file's loader reports a bad pattern; here it just matches nothing
    }
  });
}

function configError(key: string, message: string, cfg: SandboxConfig): KataError {
  return new KataError('E_CONFIG', `pod annotation ${key}: ${message}`, { annotation: key, config: cfg.source ?? '(built-in defaults)' });
}

/** The configuration with the pod's io.katacontainers.config.* annotations applied (a copy; cfg is not changed). */
export function applyKataAnnotations(cfg: SandboxConfig, annotations: Record<string, string>, log: Logger): SandboxConfig {
  const keys = Object.keys(annotations)
    .filter((k) => k.startsWith(OTHER))
    .sort();
  if (keys.length === 0) return cfg;
  const c: SandboxConfig = {
    ...cfg,
    hypervisor: { ...cfg.hypervisor, kernelParams: [...cfg.hypervisor.kernelParams] },
    runtime: { ...cfg.runtime },
  };
  const file = cfg.source ?? 'the configuration file';
  const applied: Record<string, string> = {};
  for (const key of keys) {
    const value = annotations[key]!;
    const bad = (expected: string): never => {
      throw configError(key, `value ${JSON.stringify(value)} is not ${expected}; fix the pod's annotation`, cfg);
    };
    let apply: Apply | undefined;
    if (key.startsWith(HYPERVISOR)) {
      const name = key.slice(HYPERVISOR.length);
      if (!enabled(cfg.hypervisor.enableAnnotations, name))
        throw configError(
          key,
          `not enabled: add "${name}" to enable_annotations in [hypervisor.qemu] of ${file}, or remove the annotation`,
          cfg,
        );
      if (REFUSED.has(name))
        throw configError(key, `chooses a host binary or path, which this runtime takes only from ${file}; set ${name} there`, cfg);
      apply = HYPERVISOR_KEYS[name];
    } else if (key.startsWith(RUNTIME)) {
      apply = RUNTIME_KEYS[key.slice(RUNTIME.length)];
    }
    if (!apply) {
      log.warn({ annotation: key, value }, `pod annotation ${key} is not applied by this runtime; ignored`);
      continue;
    }
    apply(c, value, bad);
    applied[key] = value;
  }
  const q = c.hypervisor;
  if (q.vcpus > q.maxVcpus)
    throw configError(
      `${HYPERVISOR}default_vcpus`,
      `${q.vcpus} vCPUs exceed default_maxvcpus (${q.maxVcpus}); lower the annotation or raise the maximum`,
      cfg,
    );
  if (q.memoryMiB > q.maxMemoryMiB)
    throw configError(
      `${HYPERVISOR}default_memory`,
      `${q.memoryMiB} MiB exceed the memory maximum (${q.maxMemoryMiB} MiB); lower the annotation or raise default_maxmemory`,
      cfg,
    );
  if (Object.keys(applied).length > 0) log.info({ annotations: applied }, 'pod annotations applied to the sandbox configuration');
  return c;
}
