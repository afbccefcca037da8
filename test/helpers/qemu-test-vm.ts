import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { DeviceSpec } from '../../host/device-specs.js';
import type { NetnsRef } from '../../host/netns.js';
import { defaultConfig } from '../../runtime-core/config/defaults.js';
import type { QemuConfig } from '../../runtime-core/config/types.js';
import { guestKernelParams } from '../../runtime-core/guest-kit/cmdline.js';
import type { GuestKit } from '../../runtime-core/guest-kit/index.js';
import type { VmSpec } from '../../runtime-core/hypervisor/hypervisor.js';
import { tempDir } from './runtime-core.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export interface TestQemu {
  proc: ChildProcess;
  pid: number;
  dir: string;
  qmpPath: string;
  /** Resolves with the exit code/signal once QEMU is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

/**
 * A bare QEMU for QMP tests: q35 under TCG, no defaults, no display, a QMP socket in a krt- temp dir,
 * and what the caller adds (root ports, -S). Killed by its PID when the test ends.
 */
export function startTestQemu(t: Teardownable, extra: string[] = [], opts: { qmpPath?: string; delayMs?: number } = {}): TestQemu {
  const dir = tempDir(t, 'qemu');
  const qmpPath = opts.qmpPath ?? join(dir, 'qmp.sock');
  const args = [
    '-machine',
    'q35,accel=tcg',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-m',
    '64',
    '-qmp',
    `unix:${qmpPath},server=on,wait=off`,
    ...extra,
  ];
  // With a delay, a shell sleeps first (to test connect retries before the socket exists); exec keeps the pid.
  const proc = opts.delayMs
    ? spawn('sh', ['-c', `sleep ${opts.delayMs / 1000}; exec qemu-system-x86_64 "$@"`, 'sh', ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
    : spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.on('exit', (code, signal) => r({ code, signal })),
  );
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      process.kill(proc.pid!, 'SIGKILL');
      await exited;
    }
  });
  return { proc, pid: proc.pid!, dir, qmpPath, exited, stderr: () => err };
}

/**
 * A VmSpec that boots the guest kit with the QEMU driver: its image as the read-only first disk
 * (root /dev/vda1, the image's partition) and the kit's kernel parameters, as the sandbox assembly would give them.
 */
export function kitVmSpec(
  kit: Pick<GuestKit, 'kernel' | 'initrd' | 'rootfs'>,
  o: { sandboxId: string; runDir: string; netns?: NetnsRef; devices?: DeviceSpec[]; config?: Partial<QemuConfig>; hotplugSlots?: number },
): VmSpec<QemuConfig> {
  const config: QemuConfig = { ...defaultConfig().hypervisor, accel: 'tcg', ...o.config };
  return {
    sandboxId: o.sandboxId,
    runDir: o.runDir,
    ...(o.netns ? { netns: o.netns } : {}),
    driverConfig: config,
    resources: {
      vcpus: config.vcpus,
      maxVcpus: config.maxVcpus,
      memoryMiB: config.memoryMiB,
      maxMemoryMiB: config.maxMemoryMiB,
      memorySlots: config.memorySlots,
      kernel: kit.kernel,
      initrd: kit.initrd,
      image: {
        kind: 'block',
        id: 'image',
        source: { kind: 'file', path: kit.rootfs },
        readonly: true,
        driver: 'virtio-blk',
        format: 'raw',
      },
      kernelParams: guestKernelParams({ rootDevice: '/dev/vda1' }),
      devices: o.devices ?? [],
      hotplugSlots: o.hotplugSlots ?? config.pcieRootPorts,
    },
  };
}
