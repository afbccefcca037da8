import { execa } from './execa-lite.js';
import { ExecError } from './errors.js';

export interface RunOptions {
  /** Data written to the child's stdin. */
  input?: string;
  /** Milliseconds before the child is killed (SIGKILL) and E_EXEC_TIMEOUT is thrown. */
  timeoutMs?: number;
  /** Do not throw on a non-zero exit; the result carries exitCode. */
  reject?: boolean;
  env?: Record<string, string>;
  cwd?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

let spawns = 0;

/** How many processes the host layer has spawned in this process (benchmarks read it). */
export function spawnCount(): number {
  return spawns;
}

export function noteSpawn(): void {
  spawns++;
}

/** Debian package that provides a binary, for the "install X" hint of E_EXEC_NOT_FOUND. */
const PACKAGE_OF: Record<string, string> = {
  ip: 'iproute2',
  tc: 'iproute2',
  nsenter: 'util-linux',
  setpriv: 'util-linux',
  losetup: 'mount',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  'qemu-nbd': 'qemu-utils',
  mknod: 'coreutils',
  ethtool: 'ethtool',
  modprobe: 'kmod',
  dmsetup: 'dmsetup',
  'nbd-client': 'nbd-client',
  nbdkit: 'nbdkit',
  nbdcopy: 'libnbd-bin',
  mkfs_ext4: 'e2fsprogs',
  busybox: 'busybox-static',
  cpio: 'cpio',
};

/**
 * Run a host command with an argument array (never a shell string). Throws ExecError with the
 * command line and captured stderr on failure or timeout.
 */
export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  spawns++;
  const command = [file, ...args].join(' ');
  const r = await execa(file, args, {
    input: opts.input,
    timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    reject: false,
    stripFinalNewline: false,
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.input === undefined ? 'ignore' : 'pipe',
  });
  const stdout = String(r.stdout ?? '');
  const stderr = String(r.stderr ?? '');
  if (r.timedOut) throw new ExecError('E_EXEC_TIMEOUT', command, stderr, undefined);
  if ((r as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String(r.originalMessage ?? ''))) {
    const base = file.split('/').pop() ?? file;
    const pkg = PACKAGE_OF[base];
    throw new ExecError(
      'E_EXEC_NOT_FOUND',
      command,
      stderr,
      undefined,
      `${file}: not found${pkg ? ` (install the Debian package ${pkg})` : ''}`,
    );
  }
  const exitCode = r.exitCode ?? -1;
  if (exitCode !== 0 && opts.reject !== false) throw new ExecError('E_EXEC', command, stderr, exitCode);
  return { stdout, stderr, exitCode };
}
