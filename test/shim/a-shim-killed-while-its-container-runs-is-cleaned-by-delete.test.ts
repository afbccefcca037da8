/**
 * The shim SIGKILLed while its container runs (a crash): containerd notices the connection close
 * and runs `containerd-shim-kata-resources-v2 delete` for the bundle, which takes the sandbox down
 * from its persisted state; afterwards no VM, virtiofsd, mount, socket or state is left.
 */
import t from 'tap';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { ctrRig, IMG, nothingLeft, qemusOf, shimsOf, sleep } from './helpers/ctr-rig.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;

t.test('the shim SIGKILLed while its container runs: containerd runs delete, nothing is left', { skip }, async (t) => {
  const r = await ctrRig(t);
  const up = await r.c.ctr([...r.run, '-d', IMG, 'k1', 'sleep', '600'], { reject: false });
  t.equal(up.exitCode, 0, `the container runs: ${up.stderr}`);
  const [shim] = shimsOf(r);
  t.ok(shim, 'its shim runs');
  t.equal(qemusOf(r).length, 1, 'and its VM');
  process.kill(shim!, 'SIGKILL');
  // containerd sees the connection close, runs `containerd-shim-kata-resources-v2 delete`, and reports the task gone.
  let gone = false;
  for (let i = 0; i < 150 && !gone; i++) {
    const ls = await r.c.ctr(['task', 'ls'], { reject: false });
    gone = !/^k1\s+\d+\s+RUNNING/m.test(ls.stdout);
    if (!gone) await sleep(200);
  }
  t.ok(gone, 'the task is no longer running');
  await r.c.ctr(['task', 'rm', '-f', 'k1'], { reject: false });
  t.equal((await r.c.ctr(['container', 'rm', 'k1'], { reject: false })).exitCode, 0, 'container rm');
  t.notMatch(r.c.log(), /level=error.*cleanup|failed to delete.*kata-resources/i, 'containerd logged no failed cleanup');
  await nothingLeft(t, r);
});
