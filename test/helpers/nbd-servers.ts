/**
 * Real NBD servers for the protocol tests: nbdkit, qemu-nbd and qemu-storage-daemon, each on a
 * unix socket in a temp dir of its own, started as supervised children (host/daemon.ts), ready
 * once the socket accepts a connection, killed by pid and their temp dir removed at teardown.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startDaemon, type Daemon } from '../../host/daemon.js';
import { KataError } from '../../host/errors.js';
import { silentLogger } from '../../host/log.js';
import { sleep } from '../../host/retry.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export interface NbdServer {
  daemon: Daemon;
  socket: string;
  dir: string;
  /** nbd+unix URI of `exportName` (default ""). */
  uri(exportName?: string): string;
}

/** A temp dir removed at teardown (after the servers in it are gone). */
export function tempDir(t: Teardownable, tag = 'nbd'): string {
  const dir = mkdtempSync(join(tmpdir(), `krt-${tag}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function serve(
  t: Teardownable,
  name: string,
  file: string,
  args: (socket: string, dir: string) => string[],
  at?: string,
): Promise<NbdServer> {
  const dir = at ? dirname(at) : tempDir(t, name);
  const socket = at ?? join(dir, 'nbd.sock');
  const daemon = await startDaemon({ name, file, args: args(socket, dir), log: silentLogger() });
  t.teardown(() => daemon.stop({ graceMs: 2000 }));
  for (let i = 0; i < 400; i++) {
    if (!daemon.running) break;
    if (await canConnect(socket)) {
      return { daemon, socket, dir, uri: (e = '') => `nbd+unix:///${encodeURIComponent(e)}?socket=${socket}` };
    }
    await sleep(25);
  }
  await daemon.stop({ graceMs: 0 });
  throw new KataError('E_DAEMON_START', `${name} did not listen on ${socket}: ${daemon.stderrTail().join(' | ')}`);
}

/**
 * nbdkit in the foreground on a unix socket: `nbdkit [args...]`, e.g. ["memory", "64M"] or
 * ["-r", "--filter=delay", "file", "disk.img", "rdelay=10ms"]. nbdkit serves one connection after
 * another and many at once. `opts.socket` listens on that path (a restart in place: nbdkit does not
 * replace a socket file a killed server left, so it is removed first).
 */
export function startNbdkit(t: Teardownable, args: string[], opts: { socket?: string } = {}): Promise<NbdServer> {
  if (opts.socket) rmSync(opts.socket, { force: true });
  return serve(t, 'nbdkit', 'nbdkit', (socket) => ['-f', '--exit-with-parent', '-U', socket, ...args], opts.socket);
}

/** qemu-nbd serving `image` (raw) as export `name`, persistent (-t), with extra args. */
export function startQemuNbd(t: Teardownable, image: string, name: string, extra: string[] = []): Promise<NbdServer> {
  return serve(t, 'qemu-nbd', 'qemu-nbd', (socket) => ['-k', socket, '-t', '-f', 'raw', '-x', name, ...extra, image]);
}

/** qemu-storage-daemon with one NBD server and an export per entry (raw files). */
export function startQemuStorageDaemon(
  t: Teardownable,
  exports: { name: string; image: string; description?: string; writable?: boolean }[],
): Promise<NbdServer> {
  return serve(t, 'qemu-storage-daemon', 'qemu-storage-daemon', (socket) => [
    ...exports.flatMap((e, i) => ['--blockdev', `driver=file,node-name=n${i},filename=${e.image}`]),
    '--nbd-server',
    `addr.type=unix,addr.path=${socket}`,
    ...exports.flatMap((e, i) => [
      '--export',
      `type=nbd,id=e${i},node-name=n${i},name=${e.name},writable=${e.writable ? 'on' : 'off'}${e.description ? `,description=${e.description}` : ''}`,
    ]),
  ]);
}

/** SIGSTOP the server and wait until every one of its threads is stopped; SIGCONT at teardown. */
export async function freeze(t: Teardownable, server: NbdServer): Promise<void> {
  t.teardown(() => server.daemon.signal('SIGCONT'));
  server.daemon.signal('SIGSTOP');
  const tasks = `/proc/${server.daemon.pid}/task`;
  const stopped = (): boolean =>
    readdirSync(tasks).every((id) => {
      const stat = readFileSync(`${tasks}/${id}/stat`, 'utf8');
      return /^\S+ \(.*\) [tT] /.test(stat);
    });
  for (let i = 0; i < 200 && !stopped(); i++) await sleep(10);
  if (!stopped()) throw new KataError('E_INTERNAL', `${server.daemon.name} ${server.daemon.pid} did not stop on SIGSTOP`);
}
