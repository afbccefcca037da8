/**
 * The kernel NBD client through Debian's `nbd-client` (package nbd-client, 3.24 in Debian 12),
 * for hypervisors without an NBD client of their own: connect an export to a /dev/nbdN,
 * disconnect it, check it, list a server's exports. Argument arrays via host/exec.ts.
 *
 * Three ways to hold a connection (nbd-client.c 3.24):
 *  - "netlink" (default): nbd-client negotiates, hands the socket to the kernel over generic
 *    netlink and exits; the kernel picks a free device. Nothing to supervise; no reconnect
 *    (3.24 ignores -persist with netlink).
 *  - "persist": `-nonetlink -persist`: nbd-client forks a daemon that sits in the NBD_DO_IT ioctl
 *    and reconnects when the server comes back. The device outlives the caller.
 *  - "foreground": `-nonetlink -nofork`, run as a supervised child (host/daemon.ts, killed with its
 *    parent): the device lives exactly as long as the caller.
 * The device is connected while /sys/block/nbdN/pid exists; in the two ioctl modes that file
 * holds the client's pid, which must be the recorded process (pid + start time) for the device to
 * count as really connected.
 */
import { readdir } from 'node:fs/promises';
import { type Daemon, type DaemonRecord, isAlive, killFromRecord, startDaemon } from './daemon.js';
import { ExecError, KataError } from './errors.js';
import { run } from './exec.js';
import { type Logger, silentLogger } from './log.js';
import { readProcStat } from './proc.js';
import { sleep } from './retry.js';
import { Sysfs } from './sysfs.js';

export type NbdServerAddress = { unix: string } | { host: string; port?: number };

export interface KernelNbdOptions {
  server: NbdServerAddress;
  exportName: string;
  /** A /dev/nbdN to use; default: the kernel's choice (netlink) or the first free one. */
  device?: string;
  /** Logical block size of the device: 512 (default), 1024, 2048 or 4096. */
  blockSize?: 512 | 1024 | 2048 | 4096;
  /** Kernel request timeout in seconds (nbd-client -timeout). */
  timeoutS?: number;
  mode?: 'netlink' | 'persist' | 'foreground';
  readOnly?: boolean;
  /** Bound on nbd-client's negotiation and the device showing up, in ms (default 30000). */
  timeoutMs?: number;
  log?: Logger;
  sysfs?: Sysfs;
}

/** What a caller persists to check or disconnect the device later (also after its own crash). */
export interface KernelNbdDevice {
  device: string;
  index: number;
  mode: 'netlink' | 'persist' | 'foreground';
  exportName: string;
  server: NbdServerAddress;
  /** The nbd-client process holding the device (ioctl modes). */
  client?: DaemonRecord;
}

const FIX = 'load the nbd kernel module (modprobe nbd) or use a hypervisor with its own NBD client';

function serverArgs(s: NbdServerAddress): string[] {
  return 'unix' in s ? ['-unix', s.unix] : [s.host, String(s.port ?? 10809)];
}

function label(s: NbdServerAddress, exportName: string): string {
  return `${'unix' in s ? `unix:${s.unix}` : `${s.host}:${s.port ?? 10809}`} export "${exportName}"`;
}

/** nbd-client's failure as a typed error: missing kernel support, busy device, or the server's refusal. */
function classify(e: unknown, what: string): unknown {
  if (!(e instanceof ExecError) || e.code !== 'E_EXEC') return e;
  const msg = e.stderr.trim().split('\n').slice(-3).join(' | ');
  if (/netlink family|module is loaded|Cannot open NBD/i.test(e.stderr)) {
    return new KataError('E_KERNEL_FEATURE', `${what}: the kernel has no NBD driver (${msg}); ${FIX}`, { stderr: e.stderr });
  }
  if (/busy/i.test(e.stderr)) return new KataError('E_BUSY', `${what}: the device is in use (${msg})`, { stderr: e.stderr });
  return new KataError('E_NBD', `${what}: nbd-client failed: ${msg || `exit ${e.exitCode}`}`, { stderr: e.stderr, exitCode: e.exitCode });
}

function indexOf(device: string): number {
  const m = /^\/dev\/nbd(\d+)$/.exec(device);
  if (!m) throw new KataError('E_INVALID_ARGUMENT', `"${device}" is not an NBD device (expected /dev/nbdN)`, { device });
  return Number(m[1]);
}

/** The nbd devices the kernel has, by index, and whether each is in use. */
async function devices(sysfs: Sysfs): Promise<{ index: number; busy: boolean }[]> {
  let names: string[];
  try {
    names = await readdir(sysfs.path('block'));
  } catch {
    names = [];
  }
  const out = [];
  for (const n of names) {
    const m = /^nbd(\d+)$/.exec(n);
    if (!m) continue;
    const busy = (await sysfs.exists('block', n, 'pid')) || ((await sysfs.tryRead('block', n, 'size')) ?? '0') !== '0';
    out.push({ index: Number(m[1]), busy });
  }
  return out.sort((a, b) => a.index - b.index);
}

/** The first /dev/nbdN that is neither connected nor sized; E_KERNEL_FEATURE without the driver, E_BUSY when all are taken. */
export async function freeNbdDevice(sysfs = new Sysfs()): Promise<string> {
  if (!(await sysfs.exists('module', 'nbd')))
    throw new KataError('E_KERNEL_FEATURE', `no NBD driver in the kernel (no ${sysfs.path('module', 'nbd')}); ${FIX}`);
  const free = (await devices(sysfs)).find((d) => !d.busy);
  if (!free) throw new KataError('E_BUSY', 'every /dev/nbdN is in use (load nbd with a larger nbds_max)');
  return `/dev/nbd${free.index}`;
}

/** Waits until /sys/block/nbdN/pid exists (and holds `pid`, when given); returns it. */
async function waitConnected(sysfs: Sysfs, index: number, ms: number, pid?: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await sysfs.tryRead('block', `nbd${index}`, 'pid');
    if (v !== undefined && (pid === undefined || Number(v) === pid)) return Number(v);
    if (Date.now() > deadline)
      throw new KataError('E_TIMEOUT', `/dev/nbd${index} did not become connected within ${ms} ms`, { device: `/dev/nbd${index}` });
    await sleep(20);
  }
}

export async function connectKernelNbd(o: KernelNbdOptions): Promise<KernelNbdDevice & { daemon?: Daemon }> {
  const sysfs = o.sysfs ?? new Sysfs();
  const mode = o.mode ?? 'netlink';
  const ms = o.timeoutMs ?? 30_000;
  const what = `nbd-client ${label(o.server, o.exportName)}`;
  if (o.blockSize !== undefined && ![512, 1024, 2048, 4096].includes(o.blockSize)) {
    throw new KataError('E_INVALID_ARGUMENT', `${what}: block size ${o.blockSize} is not 512, 1024, 2048 or 4096`);
  }
  const device = o.device ?? (mode === 'netlink' ? undefined : await freeNbdDevice(sysfs));
  const args = [
    '-N',
    o.exportName,
    ...serverArgs(o.server),
    ...(device ? [device] : []),
    ...(o.blockSize ? ['-b', String(o.blockSize)] : []),
    ...(o.timeoutS ? ['-t', String(o.timeoutS)] : []),
    ...(o.readOnly ? ['-readonly'] : []),
    ...(mode === 'netlink' ? [] : ['-nonetlink']),
    ...(mode === 'persist' ? ['-persist'] : []),
    ...(mode === 'foreground' ? ['-nofork'] : []),
  ];
  const base = { mode, exportName: o.exportName, server: o.server };
  if (mode === 'foreground') {
    const index = indexOf(device!);
    const daemon = await startDaemon({ name: 'nbd-client', file: 'nbd-client', args, log: o.log ?? silentLogger() });
    try {
      await Promise.race([
        waitConnected(sysfs, index, ms, daemon.pid),
        daemon.exited.then(() => {
          throw classify(
            new ExecError('E_EXEC', `nbd-client ${args.join(' ')}`, daemon.stderrTail().join('\n'), daemon.exitStatus?.code ?? undefined),
            what,
          );
        }),
      ]);
    } catch (e) {
      await daemon.stop({ graceMs: 1000 });
      throw e;
    }
    return { ...base, device: device!, index, client: daemon.record(), daemon };
  }
  const r = await run('nbd-client', args, { timeoutMs: ms }).catch((e) => {
    throw classify(e, what);
  });
  const index = device ? indexOf(device) : Number(/Connected \/dev\/nbd(\d+)/.exec(r.stdout)?.[1] ?? Number.NaN);
  if (!Number.isInteger(index))
    throw new KataError('E_NBD', `${what}: nbd-client did not say which device it connected (${r.stdout.trim()})`);
  const pid = await waitConnected(sysfs, index, ms);
  const dev: KernelNbdDevice = { ...base, device: `/dev/nbd${index}`, index };
  if (mode === 'persist') {
    const st = readProcStat(pid);
    if (!st) throw new KataError('E_NBD', `${what}: the nbd-client daemon (pid ${pid}) is already gone`, { device: dev.device });
    dev.client = { name: 'nbd-client', pid, startTime: st.startTime, file: 'nbd-client', args };
  }
  o.log?.info({ device: dev.device, mode, server: o.server, exportName: o.exportName }, 'nbd device connected');
  return dev;
}

export interface KernelNbdStatus {
  device: string;
  /** /sys/block/nbdN/pid exists, and (ioctl modes) the recorded client is the process in it. */
  connected: boolean;
  pid?: number;
  sizeBytes: number;
  /** For records with a client: alive (and in the device), gone, or alive but not the device's. */
  client?: 'alive' | 'gone' | 'not-the-device-holder';
}

/** The device's state from sysfs, checked against the record's client process when there is one. */
export async function checkKernelNbd(dev: Pick<KernelNbdDevice, 'device' | 'client'>, sysfs = new Sysfs()): Promise<KernelNbdStatus> {
  const name = `nbd${indexOf(dev.device)}`;
  const pidText = await sysfs.tryRead('block', name, 'pid');
  const sizeBytes = Number((await sysfs.tryRead('block', name, 'size')) ?? 0) * 512;
  const pid = pidText === undefined ? undefined : Number(pidText);
  const out: KernelNbdStatus = { device: dev.device, connected: pid !== undefined, sizeBytes, ...(pid !== undefined ? { pid } : {}) };
  if (dev.client) {
    out.client = !isAlive(dev.client) ? 'gone' : pid === dev.client.pid ? 'alive' : 'not-the-device-holder';
    out.connected &&= out.client === 'alive';
  }
  return out;
}

/**
 * Disconnect (`nbd-client -d`), wait until sysfs says so, and make sure the client process of an
 * ioctl mode is gone (killed by its record if it lingers). Harmless on a device already
 * disconnected.
 */
export async function disconnectKernelNbd(
  dev: Pick<KernelNbdDevice, 'device' | 'client' | 'mode'>,
  opts: { timeoutMs?: number; log?: Logger; sysfs?: Sysfs } = {},
): Promise<void> {
  const sysfs = opts.sysfs ?? new Sysfs();
  const ms = opts.timeoutMs ?? 30_000;
  const name = `nbd${indexOf(dev.device)}`;
  if (await sysfs.exists('block', name, 'pid')) {
    await run('nbd-client', [...(dev.mode === 'netlink' ? [] : ['-nonetlink']), '-d', dev.device], { timeoutMs: ms }).catch((e) => {
      throw classify(e, `nbd-client -d ${dev.device}`);
    });
  }
  const deadline = Date.now() + ms;
  while (await sysfs.exists('block', name, 'pid')) {
    if (Date.now() > deadline)
      throw new KataError('E_TIMEOUT', `${dev.device} still connected ${ms} ms after nbd-client -d`, { device: dev.device });
    await sleep(20);
  }
  if (dev.client) await killFromRecord(dev.client, { graceMs: 2000, ...(opts.log ? { log: opts.log } : {}) });
}

/** NBD_OPT_LIST through `nbd-client -list`: the export names (and descriptions) the server offers. */
export async function listNbdExports(
  server: NbdServerAddress,
  opts: { timeoutMs?: number } = {},
): Promise<{ name: string; description?: string }[]> {
  const what = `nbd-client -list ${label(server, '')}`;
  const r = await run(
    'nbd-client',
    ['-list', ...('unix' in server ? ['-unix', server.unix] : [server.host, String(server.port ?? 10809)])],
    {
      timeoutMs: opts.timeoutMs ?? 30_000,
    },
  ).catch((e) => {
    throw classify(e, what);
  });
  return r.stdout
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('Negotiation:'))
    .map((l) => {
      const i = l.indexOf(': ');
      return i < 0 ? { name: l } : { name: l.slice(0, i), description: l.slice(i + 2) };
    });
}
