/**
 * Debian's containerd 1.6 runs containers in our VM through the shim, driven by `ctr` exactly as a
 * user would (`--runtime io.containerd.kata-resources.v2`, the shim found on containerd's PATH, no
 * containerd configuration change): output, exit codes, stdin, 64 MiB of stdout byte-exact, a
 * terminal, a detached task with exec, kill, rm; and nothing left afterwards (no shim, no VM, no
 * socket, no mount, no state).
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { run } from '../../host/exec.js';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { bytesOf, ctrRig, IMG, nothingLeft, taskState } from './helpers/ctr-rig.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

t.test('ctr run through the shim: output, exit codes, stdin, 64 MiB, tty, exec, kill, rm; nothing left', { skip }, async (t) => {
  const blob = randomBytes(64 * 1024 * 1024);
  const r = await ctrRig(t, { files: { 'blob.bin': blob } });
  const { c } = r;
  const RUN = r.run;

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
  t.equal(out.length, blob.length, '64 MiB of stdout arrive');
  t.equal(sha(out), sha(blob), 'byte-exact');

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
  t.ok(await taskState(r, 'd1', 'STOPPED'), 'then stopped');
  t.equal((await c.ctr(['task', 'rm', 'd1'], { reject: false })).exitCode, 0, 'task rm');
  t.equal((await c.ctr(['container', 'rm', 'd1'], { reject: false })).exitCode, 0, 'container rm');

  await nothingLeft(t, r);
});
