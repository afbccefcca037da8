/**
 * What `sandbox up` would refuse about a configuration, found without making anything: the QEMU
 * and virtiofsd binaries the configuration resolves to (the defaults too), the virtiofsd's flavor
 * and whether it takes the cache mode and arguments, the accelerator, the entropy source. `up` runs
 * it before it starts the supervisor, and `check --config` reports the same problems, so a file
 * that passes `check` does not fail `up` on its configuration. The notes say what was respelled or
 * dropped for the daemon at hand (Kata's Rust virtiofsd arguments on the C daemon).
 */
import { existsSync, statSync } from 'node:fs';
import { resolveExecutable } from '../../host/daemon.js';
import { isKataError } from '../../host/errors.js';
import { detectFlavor, resolveVirtiofsConfig, translateExtraArgs, virtiofsdArgs } from '../../virtiofsd-manager/index.js';
import type { ConfigProblem } from '../config/rules.js';
import type { SandboxConfig } from '../config/types.js';
import { defaultSharedRoot, virtiofsConfigOf } from './assemble.js';

export interface PreflightResult {
  problems: ConfigProblem[];
  notes: string[];
}

/** virtiofsd-manager's key names -> the file's. */
const VIRTIOFS_KEYS: Record<string, string> = {
  'virtiofs.daemonPath': 'hypervisor.qemu.virtio_fs_daemon',
  'virtiofs.cache': 'hypervisor.qemu.virtio_fs_cache',
  'virtiofs.extraArgs': 'hypervisor.qemu.virtio_fs_extra_args',
  'virtiofs.queueSize': 'hypervisor.qemu.virtio_fs_queue_size',
};

export async function preflight(cfg: SandboxConfig): Promise<PreflightResult> {
  const problems: ConfigProblem[] = [];
  const notes: string[] = [];
  const q = cfg.hypervisor;
  if (resolveExecutable(q.path) === undefined)
    problems.push({
      key: 'hypervisor.qemu.path',
      message: `is ${q.path}, which is not an executable file${q.path.includes('/') ? '' : ' in PATH'} (install qemu-system-x86 or set path)`,
    });
  for (const [key, p] of [
    ['kernel', q.kernel],
    ['initrd', q.initrd],
    ['image', q.image],
  ] as const) {
    if (p !== undefined && !existsSync(p)) problems.push({ key: `hypervisor.qemu.${key}`, message: `names ${p}, which does not exist` });
  }
  if (q.accel === 'kvm' && !existsSync('/dev/kvm'))
    problems.push({ key: 'hypervisor.qemu.accel', message: 'is "kvm", but /dev/kvm does not exist; set accel = "auto" or "tcg"' });
  let entropy = false;
  try {
    entropy = statSync(q.entropySource).isCharacterDevice();
  } catch {
    entropy = false;
  }
  if (!entropy)
    problems.push({
      key: 'hypervisor.qemu.entropy_source',
      message: `is ${q.entropySource}, which is not a character device (use /dev/urandom)`,
    });
  if (q.sharedFs === 'virtio-fs') {
    try {
      const v = resolveVirtiofsConfig(virtiofsConfigOf(cfg, defaultSharedRoot(cfg)));
      const flavor = await detectFlavor(v.daemonPath);
      virtiofsdArgs(flavor, { ...v, socketPath: '/preflight.sock', sourceDir: '/' });
      notes.push(...translateExtraArgs(flavor, v.extraArgs).notes.map((n) => `virtio_fs_extra_args: ${n}`));
    } catch (e) {
      if (!isKataError(e) || e.code !== 'E_CONFIG') throw e;
      const k = typeof e.details.key === 'string' ? e.details.key : '';
      problems.push({ key: VIRTIOFS_KEYS[k] ?? 'hypervisor.qemu.virtio_fs_daemon', message: e.message });
    }
  }
  return { problems, notes };
}
