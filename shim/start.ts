/**
 * `start`: find or start the shim of the container's pod and print its address, as containerd
 * 1.6 expects (plain `unix://PATH`, nothing else on stdout or stderr; the socket listening before
 * the address is printed; no child holding the output pipe). The group is the pod (CRI or CRI-O
 * annotations) or the container itself; its socket is containerd's conventional one.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as fsc, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { KataError } from '../host/errors.js';
import { readProcStat } from '../host/proc.js';
import { DAEMON_STDERR, groupOf, groupSocket, readBundleSpec, SHIM_SOCKET_DIR } from './bundle.js';
import { daemonArgs, type ShimFlags } from './flags.js';

function connectable(path: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/**
 * The daemon of a new group: detached, stdout not inherited (containerd reads ours), readiness on a
 * pipe at fd 3. Its stderr (what Node itself prints on a fatal error) goes to a file in the bundle,
 * which `delete` passes on to containerd's log after a crash.
 */
async function spawnDaemon(f: ShimFlags, bundle: string, socket: string): Promise<number> {
  const stderr = openSync(join(bundle, DAEMON_STDERR), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_APPEND, 0o600);
  const child = spawn(process.execPath, [process.argv[1]!, ...daemonArgs(f, socket)], {
    cwd: bundle,
    detached: true,
    stdio: ['ignore', 'ignore', stderr, 'pipe'],
    // Blocking FIFO opens (stdin) and virtio-fs work share the thread pool: give it room.
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '64' },
  });
  closeSync(stderr);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  const line = await new Promise<string>((resolve) => {
    const t = setTimeout(() => resolve('error the shim daemon did not report within 30 s'), 30_000);
    const rl = createInterface({ input: pipe });
    rl.once('line', (l) => {
      clearTimeout(t);
      resolve(l);
    });
    child.once('exit', (code, sig) => {
      clearTimeout(t);
      resolve(`error the shim daemon exited (${code ?? sig}) before listening`);
    });
  });
  (pipe as unknown as { destroy(): void }).destroy();
  if (line !== 'ready') throw new KataError('E_DAEMON_START', `shim ${f.id}: ${line.replace(/^error /, '')}`);
  child.unref();
  return child.pid!;
}

export async function runStart(f: ShimFlags): Promise<string> {
  const bundle = process.cwd();
  const spec = readBundleSpec(bundle);
  const group = groupOf(f.id, spec.annotations ?? {});
  const socket = groupSocket(f.address, f.namespace, group.sandboxId);
  const address = `unix://${socket}`;
  if (!(await connectable(socket))) {
    if (group.role === 'container') {
      throw new KataError(
        'E_SANDBOX_NOT_FOUND',
        `container ${f.id}: the shim of its pod sandbox ${group.sandboxId} is not running; create the sandbox container first`,
      );
    }
    mkdirSync(SHIM_SOCKET_DIR, { recursive: true, mode: 0o700 });
    const pid = await spawnDaemon(f, bundle, socket);
    writeFileSync(join(bundle, 'shim.pid'), JSON.stringify({ pid, startTime: readProcStat(pid)?.startTime ?? 0 }));
  }
  // containerd reconnects through this file after a restart of its own.
  writeFileSync(join(bundle, 'address'), address);
  return address;
}
