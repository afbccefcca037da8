import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../../host/retry.js';
import { TtrpcClient } from '../../../ttrpc/client.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/**
 * task-server-maker.js in its own process, under systemd-socket-activate: it binds `path` and, on
 * the first connection, execs the server with the listening socket as fd 3 (as containerd's shim
 * start hands its daemon the socket). Returns that first connection once the server answers on
 * it. The process is stopped (SIGTERM, then SIGKILL) and the socket removed at teardown.
 */
export async function serverProcess(t: Teardownable, path: string): Promise<{ pid: number; client: TtrpcClient }> {
  const maker = join(import.meta.dirname, '..', 'task-server-maker.js');
  const child = spawn('systemd-socket-activate', ['-l', path, process.execPath, maker], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (existsSync(path)) rmSync(path);
  });
  for (let i = 0; !existsSync(path); i++) {
    if (child.exitCode !== null || i > 300) throw new Error(`systemd-socket-activate did not bind ${path}: ${out}`);
    await sleep(20);
  }
  const client = await TtrpcClient.connect(`unix://${path}`);
  t.teardown(() => client.close());
  for (let i = 0; !out.includes('ready\n'); i++) {
    if (child.exitCode !== null || i > 1500) throw new Error(`task-server-maker did not start serving: ${out}`);
    await sleep(20);
  }
  return { pid: child.pid!, client };
}
