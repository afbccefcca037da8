/**
 * The keys of the file this runtime applies, each once: how a file value sets the typed
 * configuration (with Kata's treatment of odd values: fractions rounded up, values Kata clamps
 * clamped, zero meaning "the default") and how the typed value is written back as a file value.
 * load-config.ts reads a file through `set`; `kata-resources env` prints the effective
 * configuration through `get` (so it loads back to the same configuration) and where each value
 * came from.
 */
import { isAbsolute, resolve } from 'node:path';
import { defaultConfig, hostCores, hostMemoryMiB } from './defaults.js';
import { MAX_PCIE_ROOT_PORTS, MIN_MEMORY_MIB, type RawConfig } from './schema.js';
import type { SandboxConfig } from './types.js';

export interface SetContext {
  /** Directory relative paths are anchored at (the file's). */
  base: string;
  /** A value was changed the way Kata changes it (clamped, rounded, defaulted): say so. */
  note(key: string, message: string): void;
}

interface KeySpec {
  /** Dotted file key, e.g. "hypervisor.qemu.default_memory". */
  key: string;
  set(c: SandboxConfig, v: never, x: SetContext): void;
  /** The effective value as the file would spell it (undefined: not set, e.g. no kernel given). */
  get(c: SandboxConfig): unknown;
}

const abs = (x: SetContext, p: string): string => (isAbsolute(p) ? p : resolve(x.base, p));

type Q = NonNullable<NonNullable<RawConfig['hypervisor']>['qemu']>;
type A = NonNullable<NonNullable<RawConfig['agent']>['kata']>;
type T = NonNullable<RawConfig['runtime']>;

const q = <K extends keyof Q>(
  name: K,
  set: (c: SandboxConfig, v: NonNullable<Q[K]>, x: SetContext) => void,
  get: (c: SandboxConfig) => unknown,
): KeySpec => ({
  key: `hypervisor.qemu.${String(name)}`,
  set: set as KeySpec['set'],
  get,
});
const a = <K extends keyof A>(
  name: K,
  set: (c: SandboxConfig, v: NonNullable<A[K]>, x: SetContext) => void,
  get: (c: SandboxConfig) => unknown,
): KeySpec => ({
  key: `agent.kata.${String(name)}`,
  set: set as KeySpec['set'],
  get,
});
const r = <K extends keyof T>(
  name: K,
  set: (c: SandboxConfig, v: NonNullable<T[K]>, x: SetContext) => void,
  get: (c: SandboxConfig) => unknown,
): KeySpec => ({
  key: `runtime.${String(name)}`,
  set: set as KeySpec['set'],
  get,
});

const D = defaultConfig();

export const KEYS: readonly KeySpec[] = [
  // A QEMU given by bare name is looked up in PATH at start; a relative path is anchored at the file.
  q(
    'path',
    (c, v, x) => (c.hypervisor.path = v.includes('/') ? abs(x, v) : v),
    (c) => c.hypervisor.path,
  ),
  q(
    'kernel',
    (c, v, x) => (c.hypervisor.kernel = abs(x, v)),
    (c) => c.hypervisor.kernel,
  ),
  q(
    'initrd',
    (c, v, x) => (c.hypervisor.initrd = abs(x, v)),
    (c) => c.hypervisor.initrd,
  ),
  q(
    'image',
    (c, v, x) => (c.hypervisor.image = abs(x, v)),
    (c) => c.hypervisor.image,
  ),
  q(
    'firmware',
    (c, v, x) => (c.hypervisor.firmware = v === '' ? '' : abs(x, v)),
    (c) => c.hypervisor.firmware,
  ),
  q(
    'machine_type',
    (c, v) => (c.hypervisor.machineType = v),
    (c) => c.hypervisor.machineType,
  ),
  q(
    'rootfs_type',
    (c, v) => (c.hypervisor.rootfsType = v),
    (c) => c.hypervisor.rootfsType,
  ),
  q(
    'kernel_params',
    (c, v) => (c.hypervisor.kernelParams = v.split(/\s+/).filter((s) => s !== '')),
    (c) => c.hypervisor.kernelParams.join(' '),
  ),
  q(
    'cpu_features',
    (c, v) =>
      (c.hypervisor.cpuFeatures = v
        .split(',')
        .map((f) => f.trim())
        .filter((f) => f !== '')
        .join(',')),
    (c) => c.hypervisor.cpuFeatures,
  ),
  q(
    'entropy_source',
    (c, v) => (c.hypervisor.entropySource = v === '' ? D.hypervisor.entropySource : v),
    (c) => c.hypervisor.entropySource,
  ),
  q(
    'enable_annotations',
    (c, v) => (c.hypervisor.enableAnnotations = [...v]),
    (c) => c.hypervisor.enableAnnotations,
  ),
  q(
    'valid_hypervisor_paths',
    (c, v) => (c.hypervisor.validHypervisorPaths = [...v]),
    (c) => c.hypervisor.validHypervisorPaths,
  ),
  q(
    'valid_virtio_fs_daemon_paths',
    (c, v) => (c.hypervisor.validVirtioFsDaemonPaths = [...v]),
    (c) => c.hypervisor.validVirtioFsDaemonPaths,
  ),
  q(
    'default_maxvcpus',
    (c, v, x) => {
      const host = hostCores();
      if (v > host) x.note('hypervisor.qemu.default_maxvcpus', `is ${v}, more than the host's ${host} CPUs; using ${host} (as Kata does)`);
      c.hypervisor.maxVcpus = v === 0 || v > host ? host : v;
    },
    (c) => c.hypervisor.maxVcpus,
  ),
  q(
    'default_vcpus',
    (c, v, x) => {
      const k = 'hypervisor.qemu.default_vcpus';
      const host = hostCores();
      if (v < 0 || v > host) {
        x.note(k, `is ${v}, outside 0..${host} (the host's CPUs); using ${host} (as Kata does)`);
        c.hypervisor.vcpus = host;
      } else if (v === 0) {
        c.hypervisor.vcpus = D.hypervisor.vcpus;
      } else {
        c.hypervisor.vcpus = Math.ceil(v);
        if (!Number.isInteger(v))
          x.note(
            k,
            `is ${v}: the VM gets ${c.hypervisor.vcpus} vCPUs (Kata rounds up too; the fraction, Kata's CPU quota, has no effect here)`,
          );
      }
    },
    (c) => c.hypervisor.vcpus,
  ),
  q(
    'default_memory',
    (c, v, x) => {
      if (v < MIN_MEMORY_MIB) {
        x.note(
          'hypervisor.qemu.default_memory',
          `is ${v} MiB, below Kata's minimum of ${MIN_MEMORY_MIB}; using the default ${D.hypervisor.memoryMiB} MiB (as Kata uses its default)`,
        );
        c.hypervisor.memoryMiB = D.hypervisor.memoryMiB;
      } else c.hypervisor.memoryMiB = v;
    },
    (c) => c.hypervisor.memoryMiB,
  ),
  q(
    'default_maxmemory',
    (c, v, x) => {
      const host = hostMemoryMiB();
      if (v > host)
        x.note('hypervisor.qemu.default_maxmemory', `is ${v} MiB, more than the host's ${host} MiB; using ${host} (as Kata does)`);
      c.hypervisor.maxMemoryMiB = v === 0 || v > host ? host : v;
    },
    (c) => c.hypervisor.maxMemoryMiB,
  ),
  // Kata: 0 = the default (10).
  q(
    'memory_slots',
    (c, v) => (c.hypervisor.memorySlots = v === 0 ? D.hypervisor.memorySlots : v),
    (c) => c.hypervisor.memorySlots,
  ),
  q(
    'shared_fs',
    (c, v) => (c.hypervisor.sharedFs = v),
    (c) => c.hypervisor.sharedFs,
  ),
  q(
    'virtio_fs_daemon',
    (c, v, x) => (c.hypervisor.virtioFsDaemon = abs(x, v)),
    (c) => c.hypervisor.virtioFsDaemon,
  ),
  q(
    'virtio_fs_cache',
    (c, v) => (c.hypervisor.virtioFsCache = v),
    (c) => c.hypervisor.virtioFsCache,
  ),
  q(
    'virtio_fs_cache_size',
    (c, v) => (c.hypervisor.virtioFsCacheSizeMiB = v),
    (c) => c.hypervisor.virtioFsCacheSizeMiB,
  ),
  q(
    'virtio_fs_queue_size',
    (c, v) => (c.hypervisor.virtioFsQueueSize = v),
    (c) => c.hypervisor.virtioFsQueueSize,
  ),
  q(
    'virtio_fs_extra_args',
    (c, v) => (c.hypervisor.virtioFsExtraArgs = [...v]),
    (c) => c.hypervisor.virtioFsExtraArgs,
  ),
  q(
    'disable_image_nvdimm',
    (c, v) => (c.hypervisor.disableImageNvdimm = v),
    (c) => c.hypervisor.disableImageNvdimm,
  ),
  q(
    'block_device_driver',
    (c, v) => (c.hypervisor.blockDeviceDriver = v),
    (c) => c.hypervisor.blockDeviceDriver,
  ),
  q(
    'block_device_cache_set',
    (c, v) => (c.hypervisor.blockCache.set = v),
    (c) => c.hypervisor.blockCache.set,
  ),
  q(
    'block_device_cache_direct',
    (c, v) => (c.hypervisor.blockCache.direct = v),
    (c) => c.hypervisor.blockCache.direct,
  ),
  q(
    'block_device_cache_noflush',
    (c, v) => (c.hypervisor.blockCache.noFlush = v),
    (c) => c.hypervisor.blockCache.noFlush,
  ),
  q(
    'block_device_aio',
    (c, v) => (c.hypervisor.blockCache.aio = v),
    (c) => c.hypervisor.blockCache.aio,
  ),
  q(
    'block_device_nbd_reconnect_delay',
    (c, v) => (c.hypervisor.nbdReconnectDelaySec = v),
    (c) => c.hypervisor.nbdReconnectDelaySec,
  ),
  q(
    'block_device_nbd_open_timeout',
    (c, v) => (c.hypervisor.nbdOpenTimeoutSec = v),
    (c) => c.hypervisor.nbdOpenTimeoutSec,
  ),
  q(
    'pcie_root_port',
    (c, v, x) => {
      if (v > MAX_PCIE_ROOT_PORTS) x.note('hypervisor.qemu.pcie_root_port', `is ${v}; using ${MAX_PCIE_ROOT_PORTS}, Kata's maximum`);
      c.hypervisor.pcieRootPorts = Math.min(v, MAX_PCIE_ROOT_PORTS);
    },
    (c) => c.hypervisor.pcieRootPorts,
  ),
  q(
    'disable_vhost_net',
    (c, v) => (c.hypervisor.disableVhostNet = v),
    (c) => c.hypervisor.disableVhostNet,
  ),
  q(
    'network_queues',
    (c, v) => (c.hypervisor.networkQueues = v),
    (c) => c.hypervisor.networkQueues,
  ),
  q(
    'enable_debug',
    (c, v) => (c.hypervisor.enableDebug = v),
    (c) => c.hypervisor.enableDebug,
  ),
  q(
    'accel',
    (c, v) => (c.hypervisor.accel = v),
    (c) => c.hypervisor.accel,
  ),
  q(
    'seccompsandbox',
    (c, v) => (c.hypervisor.seccompSandbox = v),
    (c) => c.hypervisor.seccompSandbox,
  ),

  a(
    'dial_timeout',
    (c, v, x) => {
      if (v === 0) x.note('agent.kata.dial_timeout', `is 0; using the default ${D.agent.dialTimeoutMs / 1000} s`);
      c.agent.dialTimeoutMs = v === 0 ? D.agent.dialTimeoutMs : v * 1000;
    },
    (c) => Math.ceil(c.agent.dialTimeoutMs / 1000),
  ),
  a(
    'enable_debug',
    (c, v) => (c.agent.enableDebug = v),
    (c) => c.agent.enableDebug,
  ),

  r(
    'internetworking_model',
    (c, v) => (c.runtime.internetworkingModel = v),
    (c) => c.runtime.internetworkingModel,
  ),
  r(
    'disable_new_netns',
    (c, v) => (c.runtime.disableNewNetns = v),
    (c) => c.runtime.disableNewNetns,
  ),
  r(
    'enable_debug',
    (c, v) => (c.runtime.enableDebug = v),
    (c) => c.runtime.enableDebug,
  ),
  r(
    'state_dir',
    (c, v) => (c.runtime.stateDir = v),
    (c) => c.runtime.stateDir,
  ),
  r(
    'volume_roots',
    (c, v) => (c.runtime.volumeRoots = [...v]),
    (c) => c.runtime.volumeRoots,
  ),
  r(
    'rw_share_reachable',
    (c, v) => (c.runtime.rwShareReachable = v),
    (c) => c.runtime.rwShareReachable,
  ),
  r(
    'sandbox_cgroup_only',
    (c, v) => (c.runtime.sandboxCgroupOnly = v),
    (c) => c.runtime.sandboxCgroupOnly,
  ),
];

/** Where an effective value came from. */
export type Origin = 'default' | 'file' | 'annotation';

function valueAt(raw: unknown, dotted: string): unknown {
  let v: unknown = raw;
  for (const part of dotted.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** Apply a (schema-checked) raw file onto cfg; returns the keys it set. */
export function applyRaw(cfg: SandboxConfig, raw: unknown, x: SetContext): string[] {
  const set: string[] = [];
  for (const k of KEYS) {
    const v = valueAt(raw, k.key);
    if (v === undefined) continue;
    k.set(cfg, v as never, x);
    set.push(k.key);
  }
  return set;
}

/** The effective configuration as a file would hold it (tables of snake_case keys). */
export function toRaw(cfg: SandboxConfig): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const k of KEYS) {
    const v = k.get(cfg);
    if (v === undefined) continue;
    const parts = k.key.split('.');
    const name = parts.pop()!;
    let node: Record<string, unknown> = out;
    for (const p of parts) node = (node[p] ??= {}) as Record<string, unknown>;
    node[name] = v;
  }
  return out;
}

/** Every applied key, dotted. */
export function appliedKeys(): string[] {
  return KEYS.map((k) => k.key);
}
