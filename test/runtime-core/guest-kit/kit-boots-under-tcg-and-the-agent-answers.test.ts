/**
 * The required end-to-end check of the guest kit: build (or find) it, boot it under QEMU TCG with
 * a minimal command line (q35, rootfs as a read-only virtio-blk disk, the agent's virtserialport on a
 * unix socket, no network), talk to the agent, shut it down. QEMU is killed by PID in teardown
 * whatever happens. The time from spawn to agent ready is printed, not asserted.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../../../runtime-core/agent/client.js';
import { ensureGuestKit, type GuestKit } from '../../../runtime-core/guest-kit/index.js';
import { minimalQemuArgs } from '../../helpers/guest-kit-qemu-args.js';
import { silentLogger } from '../../../host/log.js';

function exited(q: ChildProcess): Promise<number | null> {
  return q.exitCode !== null || q.signalCode !== null ? Promise.resolve(q.exitCode) : new Promise((r) => q.once('exit', (code) => r(code)));
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} took over ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

t.test('the guest kit boots under TCG; Check, ListInterfaces, Exec, storage and Shutdown work', async (t) => {
  let kit: GuestKit;
  try {
    kit = await ensureGuestKit({ onProgress: (m) => t.comment(`guest-kit: ${m}`), log: silentLogger() });
  } catch (e) {
    t.fail(`the guest kit could not be built: ${(e as Error).message}`);
    return;
  }
  t.ok(kit.pvh, 'the kernel boots through the PVH entry (uncompressed vmlinux)');

  const dir = await mkdtemp(join(tmpdir(), 'krt-gk-boot-'));
  const sock = join(dir, 'agent.sock');
  const serial = join(dir, 'console.log');
  const args = minimalQemuArgs(kit, { agentSocket: sock, serialLog: serial, memoryMiB: 512 });
  const started = Date.now();
  const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  q.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  t.teardown(async () => {
    if (q.exitCode === null && q.signalCode === null && q.pid) {
      try {
        process.kill(q.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await exited(q);
    }
    await rm(dir, { recursive: true, force: true });
  });
  const qemuGone = new AbortController();
  q.once('exit', (code, sig) => qemuGone.abort(new Error(`QEMU exited (${code ?? sig}): ${stderr.trim()}`)));

  const client = new AgentClient({ socketPath: sock, log: silentLogger() });
  t.teardown(() => client.close());
  try {
    await client.waitReady(180_000, { signal: qemuGone.signal });
  } catch (e) {
    const consoleLog = await readFile(serial, 'utf8').catch(() => '');
    t.fail(`agent not ready: ${(e as Error).message}\n--- guest console (tail) ---\n${consoleLog.split('\n').slice(-30).join('\n')}`);
    return;
  }
  const readyMs = Date.now() - started;
  t.comment(`QEMU spawn -> agent ready: ${readyMs} ms (TCG, ${kit.pvh ? 'PVH vmlinux' : 'bzImage'})`);

  t.ok(client.earlyAgent, 'kata-init\u2019s early agent answered the first Check (node\u2019s agent was starting)');
  t.match(await client.check(), { status: 'SERVING' }, 'Check');
  const ifs = await client.listInterfaces();
  const lo = ifs.Interfaces.find((i) => i.name === 'lo');
  t.ok(lo, 'ListInterfaces returns lo');
  t.same(await client.check(), { status: 'SERVING' }, 'then node\u2019s agent answers: the early agent handed the port over');
  t.ok(
    lo?.IPAddresses.some((a) => a.address === '127.0.0.1'),
    'lo is up with 127.0.0.1 (set by the guest init)',
  );

  const uname = await client.exec(['uname', '-r']);
  t.equal(uname.exitCode, 0);
  t.equal(uname.stdout.trim(), kit.kernelVersion, `uname -r is the kit kernel ${kit.kernelVersion}`);

  const root = (await client.listMounts()).mounts.find((m) => m.mount_point === '/');
  t.match(root, { source: '/dev/vda1', fstype: 'ext4' }, 'rootfs is the ext4 partition of the virtio-blk image');
  t.ok(root?.options.includes('ro'), 'mounted read-only');

  const mp = '/run/krt-ephemeral';
  await client.addStorages([
    { driver: 'ephemeral', driver_options: [], source: 'tmpfs', fstype: 'tmpfs', options: ['size=4m'], mount_point: mp },
  ]);
  const w = await client.exec(['sh', '-c', `echo guest-data > ${mp}/f && cat ${mp}/f`]);
  t.equal(w.stdout, 'guest-data\n', 'an ephemeral storage mounted by the agent is writable');
  await client.removeStorages([mp]);
  t.notOk(
    (await client.listMounts()).mounts.some((m) => m.mount_point === mp),
    'and unmounted again',
  );

  // A supervisor that restarts reconnects: the agent keeps serving the port across host clients.
  client.close();
  const again = new AgentClient({ socketPath: sock, log: silentLogger() });
  t.teardown(() => again.close());
  await again.waitReady(30_000, { signal: qemuGone.signal });
  t.same(await again.check(), { status: 'SERVING' }, 'a new host connection is served');

  // node's agent dying: kata-init starts another on the same port, which it gives it alone now
  const pid = (await again.exec(['sh', '-c', 'echo $PPID'])).stdout.trim();
  void again.exec(['kill', '-KILL', pid]).catch(() => {}); // its answer dies with it
  const t0 = Date.now();
  let back: unknown;
  while (Date.now() - t0 < 30_000 && back === undefined) {
    back = await again.exec(['sh', '-c', 'echo $PPID'], { timeoutMs: 2_000 }).then(
      (r) => (r.stdout.trim() !== pid ? r.stdout.trim() : undefined),
      () => undefined,
    );
  }
  t.ok(back, `a new agent serves the port after the first was killed (pid ${pid} -> ${String(back)})`);
  t.same(await again.check(), { status: 'SERVING' }, 'node\u2019s agent, not the early one');

  await again.shutdown();
  const code = await within(exited(q), 60_000, 'QEMU exit after Shutdown').catch((e: Error) => {
    t.fail(e.message);
    return null;
  });
  t.equal(code, 0, 'QEMU exited by itself after the guest powered off');
  t.notOk(existsSync(sock), 'QEMU removed its agent socket');
  t.comment(`QEMU spawn -> exit: ${Date.now() - started} ms`);
});
