/**
 * A guest-kit VM for agent tests: QEMU under TCG with the kit's minimal command line, plus a
 * virtio-fs share (QEMU's C virtiofsd) of a host temp dir, mounted in the guest at Kata's
 * /run/kata-containers/shared/containers. QEMU and virtiofsd are killed by pid and the dir removed
 * when the test ends, whatever happened.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../host/log.js';
import { AgentClient } from '../../runtime-core/agent/client.js';
import type { GuestKit } from '../../runtime-core/guest-kit/index.js';
import { minimalQemuArgs } from './guest-kit-qemu-args.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/** Where the share appears in the guest (Kata's layout). */
export const GUEST_SHARED = '/run/kata-containers/shared/containers';

export interface GuestVm {
  client: AgentClient;
  /** Host directory exported over virtio-fs (= GUEST_SHARED in the guest). */
  shared: string;
  /** Milliseconds from QEMU's spawn to the agent's first SERVING. */
  readyMs: number;
  console: () => string;
}

function killAndWait(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null || !p.pid) return Promise.resolve();
  const gone = new Promise<void>((r) => p.once('exit', () => r()));
  try {
    process.kill(p.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  return gone;
}

export async function bootGuestVm(t: Teardownable, kit: GuestKit, opts: { memoryMiB?: number; cpus?: number } = {}): Promise<GuestVm> {
  const dir = mkdtempSync(join(tmpdir(), 'krt-guestvm-'));
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  const vfsSock = join(dir, 'vfs.sock');
  const agentSock = join(dir, 'agent.sock');
  const consoleLog = join(dir, 'console.log');
  const mem = opts.memoryMiB ?? 768;
  const procs: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of procs.reverse()) await killAndWait(p);
    rmSync(dir, { recursive: true, force: true });
  });
  const vfs = spawn('/usr/lib/qemu/virtiofsd', [`--socket-path=${vfsSock}`, '-o', `source=${shared}`, '-o', 'cache=auto'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  procs.push(vfs);
  let vfsErr = '';
  vfs.stderr!.setEncoding('utf8').on('data', (d: string) => {
    vfsErr += d;
  });
  for (let i = 0; !existsSync(vfsSock); i++) {
    if (i > 200 || vfs.exitCode !== null) throw new Error(`virtiofsd did not listen on ${vfsSock}: ${vfsErr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const args = [
    ...minimalQemuArgs(kit, { agentSocket: agentSock, serialLog: consoleLog, memoryMiB: mem, cpus: opts.cpus ?? 1 }),
    '-object',
    `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
    '-machine',
    'memory-backend=mem',
    '-chardev',
    `socket,id=vfs,path=${vfsSock}`,
    '-device',
    'vhost-user-fs-pci,chardev=vfs,tag=kataShared',
  ];
  const started = Date.now();
  const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(q);
  let qErr = '';
  q.stderr!.setEncoding('utf8').on('data', (d: string) => {
    qErr += d;
  });
  const gone = new AbortController();
  q.once('exit', (code, sig) => gone.abort(new Error(`QEMU exited (${code ?? sig}): ${qErr.trim()}`)));
  const client = new AgentClient({ socketPath: agentSock, log: silentLogger() });
  t.teardown(() => client.close());
  const readConsole = (): string => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
  try {
    await client.waitReady(300_000, { signal: gone.signal });
  } catch (e) {
    throw new Error(`agent not ready: ${(e as Error).message}\n--- console ---\n${readConsole().split('\n').slice(-30).join('\n')}`);
  }
  const readyMs = Date.now() - started;
  await client.addStorages([
    { driver: 'virtio-fs', driver_options: [], source: 'kataShared', fstype: 'virtiofs', options: [], mount_point: GUEST_SHARED },
  ]);
  return { client, shared, readyMs, console: readConsole };
}
