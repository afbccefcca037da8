/**
 * containerd sends Shutdown after the last Delete of a shim's tasks; under load that call can be
 * lost (seen on the CRI path: a Delete timed out, containerd took the shim for dead and ran
 * `delete` against a live socket, and the shim served an empty pod for ever). Here the pod's only
 * task is killed and deleted over ttRPC by a client of the test, which never sends Shutdown: the
 * shim takes the sandbox down, then exits by itself after its grace period, and nothing is left.
 */
import t from 'tap';
import { TtrpcClient } from '../../ttrpc/client.js';
import { Task } from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { ctrRig, IMG, nothingLeft, qemusOf, shimSockets, shimsOf, sleep } from './helpers/ctr-rig.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;

t.test('a pod deleted without Shutdown: the shim tears the sandbox down and exits by itself', { skip }, async (t) => {
  const r = await ctrRig(t);
  const up = await r.c.ctr([...r.run, '-d', IMG, 'e1', 'sleep', '600'], { reject: false });
  t.equal(up.exitCode, 0, `the container runs: ${up.stderr}`);
  const [shim] = shimsOf(r);
  t.ok(shim, 'its shim runs');
  t.equal(qemusOf(r).length, 1, 'and its VM');
  const [socket] = shimSockets(r);
  const client = await TtrpcClient.connect(socket!);
  t.teardown(() => client.close());
  await client.call(Task.method.kill, { id: 'e1', signal: 9, all: true }, { timeoutMs: 60_000 });
  await client.call(Task.method.wait, { id: 'e1' }, { timeoutMs: 120_000 });
  await client.call(Task.method.delete, { id: 'e1' }, { timeoutMs: 120_000 });
  t.same(qemusOf(r), [], 'Delete of the last task took the VM down');
  client.close();
  // No Shutdown: the shim must end itself (its grace is 10 s; allow for a loaded machine).
  let alive = true;
  for (let i = 0; i < 300 && alive; i++) {
    alive = shimsOf(r).includes(shim!);
    if (alive) await sleep(200);
  }
  t.notOk(alive, 'the shim exited without a Shutdown');
  await r.c.ctr(['task', 'rm', '-f', 'e1'], { reject: false });
  t.equal((await r.c.ctr(['container', 'rm', 'e1'], { reject: false })).exitCode, 0, 'container rm');
  await nothingLeft(t, r);
});
