/**
 * The annotations by which a VM runtime tells a new VM from a container in an existing one: with
 * CRI's (io.kubernetes.cri.container-type / sandbox-id) and with CRI-O's
 * (io.kubernetes.cri-o.ContainerType / SandboxID), a sandbox container and a pod container started
 * by `ctr run` run in one VM (one QEMU, one shim), each in its own container environment; removing
 * the pod container keeps the VM, removing the sandbox container ends it, and nothing is left.
 */
import t, { type Test } from 'tap';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { ctrRig, IMG, nothingLeft, qemusOf, shimsOf, taskState, type Rig } from './helpers/ctr-rig.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;

const STYLES = {
  CRI: (type: string, pod: string) => [`io.kubernetes.cri.container-type=${type}`, `io.kubernetes.cri.sandbox-id=${pod}`],
  'CRI-O': (type: string, pod: string) => [`io.kubernetes.cri-o.ContainerType=${type}`, `io.kubernetes.cri-o.SandboxID=${pod}`],
};

function annotations(list: string[]): string[] {
  return list.flatMap((a) => ['--annotation', a]);
}

async function pidOf(r: Rig, id: string): Promise<number> {
  const m = new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING`, 'm').exec((await r.c.ctr(['task', 'ls'], { reject: false })).stdout);
  return m ? Number(m[1]) : 0;
}

async function removeTask(t: Test, r: Rig, id: string): Promise<void> {
  t.equal((await r.c.ctr(['task', 'kill', '-s', 'SIGKILL', id], { reject: false })).exitCode, 0, `kill ${id}`);
  t.ok(await taskState(r, id, 'STOPPED'), `${id} stops`);
  t.equal((await r.c.ctr(['task', 'rm', id], { reject: false })).exitCode, 0, `task rm ${id}`);
  t.equal((await r.c.ctr(['container', 'rm', id], { reject: false })).exitCode, 0, `container rm ${id}`);
}

for (const [style, ann] of Object.entries(STYLES)) {
  t.test(`${style} annotations: a sandbox and a pod container run in one VM, each in its own environment`, { skip }, async (t) => {
    const r = await ctrRig(t);
    const pod = `pod${style.replace('-', '').toLowerCase()}`;
    const app = `app${style.replace('-', '').toLowerCase()}`;
    const up = await r.c.ctr([...r.run, '-d', ...annotations(ann('sandbox', pod)), IMG, pod, 'sleep', '600'], { reject: false });
    t.equal(up.exitCode, 0, `the sandbox container starts: ${up.stderr}`);
    const joined = await r.c.ctr([...r.run, '-d', ...annotations(ann('container', pod)), IMG, app, 'sleep', '600'], {
      reject: false,
    });
    t.equal(joined.exitCode, 0, `the pod container starts: ${joined.stderr}`);

    t.equal(qemusOf(r).length, 1, 'one QEMU process for the pod');
    t.equal(shimsOf(r).length, 1, 'one shim for the pod');
    const [podPid, appPid] = [await pidOf(r, pod), await pidOf(r, app)];
    t.ok(podPid > 0 && podPid === appPid, `both tasks report the VM's pid (${podPid}, ${appPid})`);
    t.equal(podPid, qemusOf(r)[0], 'which is the QEMU process');

    const mark = await r.c.ctr(['task', 'exec', '--exec-id', 'm1', pod, 'sh', '-c', 'echo here > /mark; cat /mark'], {
      reject: false,
    });
    t.equal(mark.stdout.trim(), 'here', 'the sandbox container writes its root filesystem');
    const other = await r.c.ctr(['task', 'exec', '--exec-id', 'm2', app, 'sh', '-c', 'ls /mark 2>/dev/null; echo done'], {
      reject: false,
    });
    t.equal(other.stdout.trim(), 'done', 'the pod container has a root filesystem of its own (no /mark)');

    await removeTask(t, r, app);
    t.equal(qemusOf(r).length, 1, 'the VM stays while the sandbox container runs');
    const still = await r.c.ctr(['task', 'exec', '--exec-id', 'm3', pod, 'cat', '/mark'], { reject: false });
    t.equal(still.stdout.trim(), 'here', 'and the sandbox container still answers');
    await removeTask(t, r, pod);
    await nothingLeft(t, r);
  });
}

t.test('a pod container whose sandbox is not running is refused, and nothing is made', { skip }, async (t) => {
  const r = await ctrRig(t);
  const orphan = await r.c.ctr([...r.run, '-d', ...annotations(STYLES.CRI('container', 'nosuchpod')), IMG, 'orphan', 'true'], {
    reject: false,
  });
  t.not(orphan.exitCode, 0, 'ctr run fails');
  t.match(orphan.stderr, /nosuchpod.*not running|sandbox nosuchpod/, `naming the missing sandbox: ${orphan.stderr}`);
  await r.c.ctr(['container', 'rm', 'orphan'], { reject: false });
  await nothingLeft(t, r);
});
