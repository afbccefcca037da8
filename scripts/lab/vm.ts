/**
 * One lab run: a C virtiofsd exporting a read-only view of the host's root, QEMU (TCG) booting the
 * lab kit with that root as the lower layer of an overlay, three virtio-serial ports (stdout,
 * stderr, control) on unix sockets this process listens on, and the job. The command's output is
 * relayed as it arrives; the run ends with its exit status, or with EXIT_TIMEOUT / EXIT_LAB_FAILED
 * and a message saying why.
 *
 * Nothing outlives the run: QEMU and virtiofsd are supervised children (host/daemon.ts: pdeathsig,
 * so they die with this process even when it is SIGKILLed), and a detached reaper (`sh` reading a
 * pipe from us) removes the run directory and virtiofsd's pid file when this process is gone, however
 * it ended. A normal end stops both daemons and removes everything itself.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../../host/daemon.js';
import { KataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import { guestKernelParams } from '../../runtime-core/guest-kit/cmdline.js';
import { MACHINE_KERNEL_PARAMS } from '../../runtime-core/hypervisor/qemu/cmdline.js';
import { detectFlavor } from '../../virtiofsd-manager/flavor.js';
import { waitListening } from '../../virtiofsd-manager/readiness.js';
import { daemonPidFiles, virtiofsdArgs } from '../../virtiofsd-manager/virtiofsd-args.js';
import { EndMarker } from './end-marker.js';
import { PORTS, ROOT_TAG, jobScript } from './guest-scripts.js';
import type { LabKit } from './kit.js';

const EXIT_TIMEOUT = 124;
export const EXIT_LAB_FAILED = 125;

const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const QEMU = 'qemu-system-x86_64';
/** How long to wait for the output's end markers after the exit status arrived. */
const DRAIN_MS = 10_000;

/**
 * Runs as `sh -c` inside a private mount namespace (slave: the host's unmounts still reach it): a
 * recursive bind of / with the pseudo file systems and namespace handles taken out, every mount of
 * it read-only, then exec virtiofsd on it. The guest mounts it read-only too; this makes the host
 * side refuse writes whatever the guest does.
 */
const READONLY_ROOT_SH = `set -e
R="$1"; shift
mount --rbind / "$R"
for m in proc sys dev; do mountpoint -q "$R/$m" && umount -R -l "$R/$m"; done
awk -v r="$R" '$5 == r || index($5, r "/") == 1 { if ($0 ~ / - nsfs /) print "ns " $5; else print "fs " $5 }' /proc/self/mountinfo |
  while read -r kind m; do
    if [ "$kind" = ns ]; then umount -l "$m"; else mount -o remount,bind,ro "$m"; fi
  done
exec "$@"`;

export interface LabRunOptions {
  modules: readonly string[];
  memMiB: number;
  cpus: number;
  timeoutS: number;
  bootTimeoutS: number;
  env: Record<string, string>;
  cwd: string;
  argv: readonly string[];
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** A line about the lab itself (not the command's output). */
  note: (m: string) => void;
  verbose: boolean;
  log: Logger;
}

type Outcome =
  | { kind: 'exit'; code: number }
  | { kind: 'error'; message: string }
  | { kind: 'qemu-exit' }
  | { kind: 'virtiofsd-exit' }
  | { kind: 'boot-timeout' }
  | { kind: 'timeout' }
  | { kind: 'signal'; signal: NodeJS.Signals };

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** Removes `paths` once this process is gone, however it ends (its stdin is a pipe from us). */
function startReaper(paths: string[]): void {
  const r = spawn('sh', ['-c', 'read -r _; rm -rf -- "$@"', 'sh', ...paths], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  r.unref();
  (r.stdin as unknown as { unref?: () => void } | null)?.unref?.();
}

function listen(path: string, onData: (b: Buffer) => void, greeting?: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((sock) => {
      if (greeting !== undefined) sock.write(greeting);
      sock.on('data', onData);
      sock.on('error', () => {});
    });
    s.once('error', reject);
    s.listen(path, () => resolve(s));
  });
}

function qemuExit(q: Daemon | undefined): string {
  const x = q?.exitStatus;
  return x ? (x.signal ? `signal ${x.signal}` : `status ${x.code}`) : 'not started';
}

async function tail(path: string, n: number): Promise<string[]> {
  const t = await readFile(path, 'utf8').catch(() => '');
  return t
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(-n);
}

export async function runLab(kit: LabKit, o: LabRunOptions): Promise<number> {
  const started = Date.now();
  for (const p of [kit.modulesDir, o.cwd, tmpdir()]) {
    if (/\s/.test(p)) throw new KataError('E_INVALID_ARGUMENT', `${p} contains white space; the lab passes it on the kernel command line`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'kr-lab-'));
  const vfsSock = join(dir, 'vfs.sock');
  const flavor = await detectFlavor(VIRTIOFSD);
  const pidFiles = daemonPidFiles(flavor, vfsSock);
  startReaper([dir, ...pidFiles]);

  const mark = randomBytes(16).toString('hex');
  const markers = { stdout: new EndMarker(Buffer.from(mark)), stderr: new EndMarker(Buffer.from(mark)) };
  let finish!: (x: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => {
    finish = r;
  });
  let ready = false;
  let exitCode: number | undefined;
  let drainTimer: NodeJS.Timeout | undefined;
  const maybeDone = (): void => {
    if (exitCode !== undefined && markers.stdout.done && markers.stderr.done) finish({ kind: 'exit', code: exitCode });
  };
  let ctlText = '';
  const onCtl = (b: Buffer): void => {
    ctlText += b.toString('utf8');
    let nl: number;
    while ((nl = ctlText.indexOf('\n')) >= 0) {
      const line = ctlText.slice(0, nl).trim();
      ctlText = ctlText.slice(nl + 1);
      if (line === 'ready') {
        ready = true;
        if (o.verbose) o.note(`VM up after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } else if (line.startsWith('error ')) finish({ kind: 'error', message: line.slice(6) });
      else if (/^exit \d+$/.test(line)) {
        exitCode = Number(line.slice(5));
        drainTimer = setTimeout(() => finish({ kind: 'exit', code: exitCode! }), DRAIN_MS);
        maybeDone();
      }
    }
  };
  const relay = (which: 'stdout' | 'stderr') => (b: Buffer) => {
    const out = markers[which].push(b);
    if (out.length) o[which].write(out);
    if (markers[which].done) maybeDone();
  };

  const servers: Server[] = [];
  const daemons: Daemon[] = [];
  const onSignal = (signal: NodeJS.Signals): void => finish({ kind: 'signal', signal });
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, onSignal);
  const timers = [
    setTimeout(() => finish({ kind: 'timeout' }), o.timeoutS * 1000),
    setTimeout(() => {
      if (!ready) finish({ kind: 'boot-timeout' });
    }, o.bootTimeoutS * 1000),
  ];
  try {
    await writeFile(join(dir, 'job.sh'), jobScript({ modules: o.modules, cwd: o.cwd, env: o.env, argv: o.argv }));
    servers.push(await listen(join(dir, 'out.sock'), relay('stdout')));
    servers.push(await listen(join(dir, 'err.sock'), relay('stderr')));
    servers.push(await listen(join(dir, 'ctl.sock'), onCtl, `mark ${mark}\n`));

    const rootView = join(dir, 'root');
    await mkdir(rootView);
    const vfsArgs = virtiofsdArgs(flavor, {
      socketPath: vfsSock,
      sourceDir: rootView,
      cache: 'always',
      sandbox: 'namespace',
      threadPoolSize: undefined,
      xattr: false,
      announceSubmounts: false,
      extraArgs: [],
      dropCaps: [],
    });
    const vfs = await startDaemon({
      name: 'virtiofsd',
      file: 'unshare',
      args: ['--mount', '--propagation', 'slave', '--', 'sh', '-c', READONLY_ROOT_SH, 'sh', rootView, VIRTIOFSD, ...vfsArgs],
      log: o.log,
    });
    daemons.push(vfs);
    const listening = await waitListening(vfsSock, { timeoutMs: 15_000, gone: () => !vfs.running });
    if (listening !== 'listening') {
      throw new KataError(
        'E_DAEMON_START',
        `virtiofsd for the host root ${listening === 'exited' ? 'exited' : 'did not listen within 15 s'}`,
        {
          stderr: vfs.stderrTail(10),
        },
      );
    }
    // virtiofsd also exits when QEMU, its only client, does: then QEMU's exit is the news.
    let qemu: Daemon | undefined;
    void vfs.exited.then((x) => {
      if (!x.expected) setTimeout(() => finish(qemu && !qemu.running ? { kind: 'qemu-exit' } : { kind: 'virtiofsd-exit' }), 300);
    });

    // The lab's initramfs mounts the host root itself (root= is not read); the rest is the guest's.
    const params = [
      ...MACHINE_KERNEL_PARAMS,
      ...guestKernelParams({ rootDevice: '/dev/vda' }),
      `lab.modules=${kit.modulesDir}`,
      `lab.job=${dir}`,
    ];
    for (const x of params)
      if (x === '' || /\s/.test(x))
        throw new KataError('E_INVALID_ARGUMENT', `lab: kernel parameter ${JSON.stringify(x)} is empty or contains white space`);
    const cmdline = params.join(' ');
    const mem = `${o.memMiB}M`;
    const portArgs = (['stdout', 'stderr', 'ctl'] as const).flatMap((p) => [
      '-chardev',
      `socket,id=${p},path=${join(dir, { stdout: 'out.sock', stderr: 'err.sock', ctl: 'ctl.sock' }[p])}`,
      '-device',
      `virtserialport,chardev=${p},name=${PORTS[p]}`,
    ]);
    qemu = await startDaemon({
      name: 'qemu',
      file: QEMU,
      args: [
        ...['-accel', 'tcg', '-cpu', 'max', '-machine', 'q35', '-smp', String(o.cpus), '-m', mem],
        ...['-object', `memory-backend-memfd,id=mem,size=${mem},share=on`, '-numa', 'node,memdev=mem'],
        ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-serial', `file:${join(dir, 'console.log')}`],
        ...['-kernel', kit.kernel, '-initrd', kit.initrd, '-append', cmdline],
        ...['-chardev', `socket,id=vfs,path=${vfsSock}`, '-device', `vhost-user-fs-pci,chardev=vfs,tag=${ROOT_TAG},queue-size=1024`],
        ...['-device', 'virtio-serial-pci', ...portArgs],
      ],
      log: o.log,
    });
    daemons.unshift(qemu);
    if (o.verbose) o.note(`booting ${kit.kernelPackage} ${kit.kernelPackageVersion} (qemu pid ${qemu.pid}, run dir ${dir})`);
    // The ports' last bytes may still be on their way when QEMU exits: a moment for them.
    void qemu.exited.then(() => setTimeout(() => finish({ kind: 'qemu-exit' }), 300));

    const x = await outcome;
    for (const which of ['stdout', 'stderr'] as const) {
      const rest = markers[which].flush();
      if (rest.length) o[which].write(rest);
    }
    switch (x.kind) {
      case 'exit':
        return x.code;
      case 'error':
        o.note(`${x.message}`);
        return EXIT_LAB_FAILED;
      case 'signal':
        o.note(`stopped by ${x.signal}; the VM was stopped`);
        return 128 + (SIGNAL_NUMBERS[x.signal] ?? 15);
      case 'timeout':
        o.note(`${o.argv.join(' ')} did not finish within ${o.timeoutS} s (--timeout); the VM was stopped`);
        return EXIT_TIMEOUT;
      default: {
        const why =
          x.kind === 'boot-timeout'
            ? `the VM did not boot within ${o.bootTimeoutS} s (--boot-timeout)`
            : x.kind === 'virtiofsd-exit'
              ? `virtiofsd exited while the VM ran (${vfs.stderrTail(3).join(' | ') || 'no message'})`
              : ready
                ? `the VM stopped before ${o.argv[0]} finished (kernel panic or poweroff)`
                : `the VM failed to boot: QEMU exited (${qemuExit(qemu)}) before the guest came up`;
        const kernel = await tail(join(dir, 'console.log'), 8);
        const q = qemu.stderrTail(4);
        const silent = x.kind === 'qemu-exit' && !ready && kernel.length === 0 && q.length === 0;
        o.note(`${why}${silent ? ', with no console output (too little --mem?)' : ''}`);
        if (q.length) o.note(`  qemu: ${q.join(' | ')}`);
        for (const l of kernel) o.note(`  console: ${l}`);
        return EXIT_LAB_FAILED;
      }
    }
  } finally {
    for (const t of [...timers, drainTimer]) clearTimeout(t);
    for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.off(s, onSignal);
    for (const d of daemons) await d.stop({ graceMs: 2000, termRepeatMs: 50 });
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
    await rm(dir, { recursive: true, force: true });
    for (const p of pidFiles) await rm(p, { force: true });
  }
}
