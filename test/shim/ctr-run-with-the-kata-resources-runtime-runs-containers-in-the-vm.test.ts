/**
 * Debian's containerd 1.6 runs containers in our VM through the shim, driven by `ctr` exactly as a
 * user would (`--runtime io.containerd.kata-resources.v2`, the shim found on containerd's PATH, no
 * containerd configuration change): output, exit codes, stdin, 64 MiB of stdout byte-exact, a
 * terminal, a detached task with exec, kill, rm; and nothing left afterwards (no shim, no VM, no
 * socket, no mount, no state).
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../host/exec.js';
import { buildBusyboxImage, containerdUnavailable, startContainerd, type Containerd } from '../cni/helpers/containerd.js';
import { tempNetns } from '../helpers/netns.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { processesMentioning } from '../helpers/sandbox.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;
const ROOT = join(import.meta.dirname, '..', '..', '..');
const IMG = 'docker.io/library/krt-bb:latest';
const RT = ['--runtime', 'io.containerd.kata-resources.v2'];

interface Rig {
  c: Containerd;
  cfg: string;
  stateDir: string;
  blob: Buffer;
}

async function rig(t: Test): Promise<Rig> {
  const hostNs = await tempNetns(t, 'ctrh');
  const opt = join('/tmp', `krt-opt-${randomBytes(3).toString('hex')}`);
  mkdirSync(join(opt, 'bin'), { recursive: true });
  t.teardown(() => run('rm', ['-rf', opt]));
  await run(process.execPath, [join(ROOT, 'shim/build/install.mjs'), '--bin-dir', join(opt, 'bin')]);
  const c = await startContainerd(t, hostNs, { optDir: opt });
  const stateDir = join(c.dir, 'kr-state');
  const cfg = join(c.dir, 'kr.toml');
  writeFileSync(cfg, `[runtime]\nstate_dir = "${stateDir}"\n`);
  const blob = randomBytes(64 * 1024 * 1024);
  const work = join(c.dir, 'img');
  mkdirSync(work);
  const tar = await buildBusyboxImage(work, '/bin/busybox', { files: { 'blob.bin': blob } });
  await c.ctr(['image', 'import', '--base-name', 'docker.io/library/krt-bb', tar]);
  return { c, cfg, stateDir, blob };
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** A command's stdout as bytes (the exec layer decodes text). */
function bytesOf(file: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => chunks.push(d));
    p.once('error', reject);
    p.once('exit', () => resolve(Buffer.concat(chunks)));
  });
}

t.test('ctr run through the shim: output, exit codes, stdin, 64 MiB, tty, exec, kill, rm; nothing left', { skip }, async (t) => {
  const r = await rig(t);
  const { c } = r;
  const RUN = ['run', ...RT, '--runtime-config-path', r.cfg];

  const hi = await c.ctr([...RUN, '--rm', IMG, 'c1', 'echo', 'hi'], { reject: false });
  t.equal(hi.exitCode, 0, `echo hi exits 0: ${hi.stderr}`);
  t.equal(hi.stdout, 'hi\n', 'and prints hi');

  const seven = await c.ctr([...RUN, '--rm', IMG, 'c2', 'sh', '-c', 'exit 7'], { reject: false });
  t.equal(seven.exitCode, 7, `sh -c 'exit 7' exits 7: ${seven.stderr}`);

  const cat = await run(
    'nsenter',
    [`--mount=${c.mntns}`, `--net=${c.hostNs.path}`, 'ctr', '-a', c.socket, '-n', 'krt', ...RUN, '--rm', IMG, 'c3', 'cat'],
    {
      input: 'abc\n',
      reject: false,
      timeoutMs: 180_000,
    },
  );
  t.equal(cat.stdout, 'abc\n', `stdin reaches the container: ${cat.stderr}`);
  t.equal(cat.exitCode, 0);

  const out = await bytesOf('nsenter', [
    `--mount=${c.mntns}`,
    `--net=${c.hostNs.path}`,
    'ctr',
    '-a',
    c.socket,
    '-n',
    'krt',
    ...RUN,
    '--rm',
    IMG,
    'c4',
    'cat',
    '/bin/blob.bin',
  ]);
  t.equal(out.length, r.blob.length, '64 MiB of stdout arrive');
  t.equal(sha(out), sha(r.blob), 'byte-exact');

  const tty = await run(
    'script',
    [
      '-qec',
      `nsenter --mount=${c.mntns} --net=${c.hostNs.path} ctr -a ${c.socket} -n krt ${RUN.join(' ')} --rm -t ${IMG} c5 sh -c 'stty size; echo tty-ok; exit 3'`,
      '/dev/null',
    ],
    { reject: false, timeoutMs: 180_000 },
  );
  t.match(tty.stdout, /tty-ok/, `a terminal command runs: ${tty.stderr}`);
  t.equal(tty.exitCode, 3, 'with its exit code');

  t.equal((await c.ctr([...RUN, '-d', IMG, 'd1', 'sleep', '600'], { reject: false })).exitCode, 0, 'run -d');
  const ex = await c.ctr(['task', 'exec', '--exec-id', 'e1', 'd1', 'sh', '-c', 'echo exec-out; exit 4'], { reject: false });
  t.equal(ex.stdout.trim(), 'exec-out', 'task exec output');
  t.equal(ex.exitCode, 4, 'task exec exit code');
  const ls = await c.ctr(['task', 'ls'], { reject: false });
  t.match(ls.stdout, /d1\s+\d+\s+RUNNING/, 'task ls shows it running');
  t.equal((await c.ctr(['task', 'kill', '-s', 'SIGKILL', 'd1'], { reject: false })).exitCode, 0, 'task kill');
  for (let i = 0; i < 100 && !/STOPPED/.test((await c.ctr(['task', 'ls'], { reject: false })).stdout); i++)
    await new Promise((res) => setTimeout(res, 200));
  t.match((await c.ctr(['task', 'ls'], { reject: false })).stdout, /d1\s+\d+\s+STOPPED/, 'then stopped');
  t.equal((await c.ctr(['task', 'rm', 'd1'], { reject: false })).exitCode, 0, 'task rm');
  t.equal((await c.ctr(['container', 'rm', 'd1'], { reject: false })).exitCode, 0, 'container rm');

  // Nothing is left: no shim, no QEMU or virtiofsd of ours, no socket, no rootfs mount, no sandbox state.
  for (let i = 0; i < 50 && processesMentioning('containerd-shim-kata-resources-v2').length > 0; i++)
    await new Promise((res) => setTimeout(res, 200));
  t.same(processesMentioning('containerd-shim-kata-resources-v2'), [], 'no shim process');
  t.same(processesMentioning(r.stateDir), [], 'no QEMU or virtiofsd of the sandboxes');
  t.same((await c.inMnt('sh', ['-c', 'ls /run/containerd/s 2>/dev/null || true'])).trim(), '', 'no shim socket');
  t.notMatch(await c.inMnt('cat', ['/proc/self/mountinfo']), /\/rootfs |kr-state/, 'no rootfs or shared-tree mount');
  t.same(existsSync(join(r.stateDir, 'sandboxes')) ? readdirSync(join(r.stateDir, 'sandboxes')) : [], [], 'no sandbox state');
});
