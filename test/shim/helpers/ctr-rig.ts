/**
 * A private containerd (test/cni/helpers/containerd.ts) with our shim installed on its PATH (its
 * `opt` bin dir, no containerd configuration change), a local busybox image imported, and a
 * kata-resources configuration whose state lives in the test's directory. Shared by the shim's
 * end-to-end tests.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { run } from '../../../host/exec.js';
import { buildBusyboxImage, startContainerd, type Containerd } from '../../cni/helpers/containerd.js';
import { tempNetns } from '../../helpers/netns.js';
import { processesMentioning } from '../../helpers/sandbox.js';

const ROOT = join(import.meta.dirname, '..', '..', '..', '..');
export const IMG = 'docker.io/library/krt-bb:latest';
export const SHIM = 'containerd-shim-kata-resources-v2';

export interface Rig {
  c: Containerd;
  /** The kata-resources configuration file (`--runtime-config-path`). */
  cfg: string;
  stateDir: string;
  /** `run --runtime io.containerd.kata-resources.v2 --runtime-config-path CFG`. */
  run: string[];
}

export async function ctrRig(t: Test, opts: { files?: Record<string, Buffer>; toml?: string } = {}): Promise<Rig> {
  const hostNs = await tempNetns(t, 'ctrh');
  const opt = join('/tmp', `krt-opt-${randomBytes(3).toString('hex')}`);
  mkdirSync(join(opt, 'bin'), { recursive: true });
  t.teardown(() => run('rm', ['-rf', opt]));
  await run(process.execPath, [join(ROOT, 'shim/build/install.mjs'), '--bin-dir', join(opt, 'bin')]);
  const c = await startContainerd(t, hostNs, { optDir: opt });
  const stateDir = join(c.dir, 'kr-state');
  const cfg = join(c.dir, 'kr.toml');
  writeFileSync(cfg, `[runtime]\nstate_dir = "${stateDir}"\n${opts.toml ?? ''}`);
  const work = join(c.dir, 'img');
  mkdirSync(work);
  const tar = await buildBusyboxImage(work, '/bin/busybox', { files: opts.files ?? {} });
  await c.ctr(['image', 'import', '--base-name', 'docker.io/library/krt-bb', tar]);
  return { c, cfg, stateDir, run: ['run', '--runtime', 'io.containerd.kata-resources.v2', '--runtime-config-path', cfg] };
}

/** A command's stdout as bytes (the exec layer decodes text). */
export function bytesOf(file: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => chunks.push(d));
    p.once('error', reject);
    p.once('exit', () => resolve(Buffer.concat(chunks)));
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

/** Wait until `ctr task ls` shows the task in a state (RUNNING, STOPPED). */
export async function taskState(r: Rig, id: string, state: string, tries = 150): Promise<boolean> {
  const re = new RegExp(`^${id}\\s+\\d+\\s+${state}`, 'm');
  for (let i = 0; i < tries; i++) {
    if (re.test((await r.c.ctr(['task', 'ls'], { reject: false })).stdout)) return true;
    await sleep(200);
  }
  return false;
}

/** The shim processes of this rig's containerd (their argv names its socket). */
export function shimsOf(r: Rig): number[] {
  return processesMentioning(SHIM)
    .filter((p) => p.cmdline.includes(r.c.socket))
    .map((p) => p.pid);
}

/** QEMU processes of this rig's sandboxes. */
export function qemusOf(r: Rig): number[] {
  return processesMentioning(r.stateDir)
    .filter((p) => p.cmdline.startsWith('qemu-system') || p.cmdline.includes('/qemu-system'))
    .map((p) => p.pid);
}

/** The shim sockets in containerd's /run/containerd/s, as paths the test process can connect to. */
export function shimSockets(r: Rig): string[] {
  const dir = `/proc/${r.c.pid}/root/run/containerd/s`;
  return existsSync(dir) ? readdirSync(dir).map((n) => join(dir, n)) : [];
}

/** After a test: no shim, no QEMU or virtiofsd, no socket, no rootfs or shared-tree mount, no state. */
export async function nothingLeft(t: Test, r: Rig): Promise<void> {
  for (let i = 0; i < 50 && shimsOf(r).length > 0; i++) await sleep(200);
  t.same(shimsOf(r), [], 'no shim process');
  t.same(processesMentioning(r.stateDir), [], 'no QEMU or virtiofsd of the sandboxes');
  t.same((await r.c.inMnt('sh', ['-c', 'ls /run/containerd/s 2>/dev/null || true'])).trim(), '', 'no shim socket');
  t.notMatch(await r.c.inMnt('cat', ['/proc/self/mountinfo']), /\/rootfs |kr-state/, 'no rootfs or shared-tree mount');
  const sandboxes = join(r.stateDir, 'sandboxes');
  t.same(existsSync(sandboxes) ? readdirSync(sandboxes) : [], [], 'no sandbox state');
}
