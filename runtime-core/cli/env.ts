/**
 * `kata-resources env` (as `kata-runtime env`): the effective configuration after defaults, as a
 * file would hold it (written back as TOML it loads to the same configuration), where each value
 * came from, the Kata keys that have no effect here and why, the versions, the guest kit and host
 * facts: what a bug report needs. Nothing is built or started (the guest kit is shown only if it is
 * in the cache).
 */
import { existsSync, readFileSync } from 'node:fs';
import { arch, cpus, release, totalmem } from 'node:os';
import { run } from '../../host/exec.js';
import { resolveExecutable } from '../../host/daemon.js';
import type { Logger } from '../../host/log.js';
import { buildInfo } from '../build-info.js';
import { DEFAULT_CONFIG_PATHS } from '../config/defaults.js';
import { appliedKeys, toRaw, type Origin } from '../config/keys.js';
import { loadConfigReport, type ConfigReport } from '../config/load-config.js';
import { cachedGuestKit } from '../guest-kit/index.js';
import { detectFlavor } from '../../virtiofsd-manager/index.js';

async function firstLine(file: string, args: string[]): Promise<string> {
  try {
    const r = await run(file, args, { timeoutMs: 5000, reject: false });
    return (r.stdout || r.stderr).split('\n')[0]?.trim() ?? '';
  } catch (e) {
    return `(${(e as Error).message})`;
  }
}

function distro(): string {
  try {
    return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch {
    return '';
  }
}

export async function environment(configFile: string | undefined, log: Logger): Promise<Record<string, unknown>> {
  const report: ConfigReport = loadConfigReport(configFile, { log });
  const cfg = report.config;
  const q = cfg.hypervisor;
  const b = buildInfo();
  const origins: Record<string, Origin> = {};
  for (const k of appliedKeys()) origins[k] = report.origins[k] ?? 'default';
  const qemu = resolveExecutable(q.path);
  const flavor = q.sharedFs === 'virtio-fs' ? await detectFlavor(q.virtioFsDaemon).catch((e: Error) => e) : undefined;
  const kit = await cachedGuestKit();
  const asset = (given: string | undefined, fromKit: string | undefined) =>
    given !== undefined
      ? { path: given, from: 'configuration' }
      : { path: fromKit ?? '(the embedded guest kit, built on first use)', from: 'guest kit' };
  return {
    meta: { version: 1 },
    runtime: {
      name: 'kata-resources',
      version: b.version,
      commit: b.commit,
      dirty: b.dirty,
      node: process.version,
      config: {
        file: report.file ?? '',
        chosenBy: report.chosenBy,
        defaultPaths: DEFAULT_CONFIG_PATHS,
        variables: ['KATA_RESOURCES_CONFIG', 'KATA_CONF_FILE'],
      },
    },
    configuration: toRaw(cfg),
    origins,
    notApplied: report.ignored
      .filter((i) => i.reason !== undefined)
      .map((i) => ({ key: i.key, value: i.value, reason: i.reason!, changesNothing: i.changesNothing })),
    unknown: report.ignored.filter((i) => i.reason === undefined).map((i) => i.key),
    notes: report.notes.map((n) => `${n.key} ${n.message}`),
    hypervisor: {
      path: qemu ?? q.path,
      version: qemu ? await firstLine(qemu, ['--version']) : 'not found',
      accel: q.accel,
      kvmDevice: existsSync('/dev/kvm'),
    },
    virtiofsd:
      flavor === undefined
        ? { sharedFs: q.sharedFs }
        : flavor instanceof Error
          ? { path: q.virtioFsDaemon, error: flavor.message }
          : { path: q.virtioFsDaemon, flavor: flavor.kind, version: flavor.version },
    kernel: asset(q.kernel, kit?.kernel),
    initrd: asset(q.initrd, kit?.initrd),
    image: { ...asset(q.image, kit?.rootfs), nvdimm: !q.disableImageNvdimm },
    guestKit: kit
      ? {
          hash: kit.hash,
          kernelVersion: kit.kernelVersion,
          kernelPackage: `${kit.kernelPackage} ${kit.kernelPackageVersion}`,
          dir: kit.dir,
        }
      : { built: false },
    host: { kernel: release(), arch: arch(), distro: distro(), cpus: cpus().length, memoryMiB: Math.floor(totalmem() / (1024 * 1024)) },
  };
}
