/**
 * Bad input to a running shim, sent over ttRPC to its socket as a faulty or hostile client would:
 * a bundle whose config.json is malformed, a rootfs mount type the shim cannot handle, an unknown
 * method and service, a request over ttRPC's 4 MiB limit. Each gets an error status whose message
 * names the problem, nothing is left of the refused container, and the shim and the pod's running
 * container keep working.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { TtrpcClient } from '../../ttrpc/client.js';
import { MessageType } from '../../ttrpc/frame.js';
import { create, toBinary } from '@bufbuild/protobuf';
import { RequestSchema } from '../../ttrpc/generated/ttrpc/request_pb.js';
import { Task } from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { rawPeer } from '../ttrpc/helpers/raw-peer.js';
import { ctrRig, IMG, nothingLeft, shimSockets, shimsOf, taskState } from './helpers/ctr-rig.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;
const TASK = 'containerd.task.v2.Task';

/** Await a promise that must reject; its error (or a note that it resolved). */
async function failure(p: Promise<unknown>): Promise<{ grpcCode?: number; message: string }> {
  try {
    await p;
    return { message: 'it succeeded' };
  } catch (e) {
    return e as { grpcCode?: number; message: string };
  }
}

t.test('malformed bundle, unknown rootfs type, unknown method, 5 MiB request: errors, and the shim serves on', { skip }, async (t) => {
  const r = await ctrRig(t);
  const POD = 'badpod';
  const up = await r.c.ctr(
    [
      ...r.run,
      '-d',
      '--annotation',
      'io.kubernetes.cri.container-type=sandbox',
      '--annotation',
      `io.kubernetes.cri.sandbox-id=${POD}`,
      IMG,
      POD,
      'sleep',
      '600',
    ],
    { reject: false },
  );
  t.equal(up.exitCode, 0, `the pod runs: ${up.stderr}`);
  const shim = shimsOf(r);
  t.equal(shim.length, 1, 'one shim');
  const [socket] = shimSockets(r);
  t.ok(socket, 'its socket is in /run/containerd/s');
  const client = await TtrpcClient.connect(socket!);
  t.teardown(() => client.close());

  // config.json that is not JSON.
  const broken = join(r.c.dir, 'bundle-broken');
  mkdirSync(broken);
  writeFileSync(join(broken, 'config.json'), '{"ociVersion": "1.0.2", "process": ');
  const e1 = await failure(client.call(Task.method.create, { id: 'bad1', bundle: broken }, { timeoutMs: 60_000 }));
  t.equal(e1.grpcCode, 3, 'malformed config.json: INVALID_ARGUMENT');
  t.match(e1.message, /config\.json is not valid JSON/, `naming the file: ${e1.message}`);

  // A pod container whose rootfs is an NFS mount.
  const nfs = join(r.c.dir, 'bundle-nfs');
  mkdirSync(join(nfs, 'rootfs'), { recursive: true });
  writeFileSync(
    join(nfs, 'config.json'),
    JSON.stringify({
      ociVersion: '1.0.2',
      process: { args: ['true'], cwd: '/' },
      root: { path: 'rootfs' },
      annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': POD },
    }),
  );
  const e2 = await failure(
    client.call(
      Task.method.create,
      { id: 'bad2', bundle: nfs, rootfs: [{ type: 'nfs', source: 'server:/export', options: ['vers=4'] }] },
      { timeoutMs: 60_000 },
    ),
  );
  t.equal(e2.grpcCode, 12, 'unsupported rootfs type: UNIMPLEMENTED (containerd reads it as errdefs.ErrNotImplemented)');
  t.match(e2.message, /rootfs mount type "nfs" is not supported/, `naming the type: ${e2.message}`);
  const s2 = await failure(client.call(Task.method.state, { id: 'bad2' }, { timeoutMs: 10_000 }));
  t.equal(s2.grpcCode, 5, 'the refused container does not exist afterwards (NOT_FOUND)');
  t.notMatch(await r.c.inMnt('cat', ['/proc/self/mountinfo']), /bundle-nfs/, 'and nothing of it is mounted');

  // A method and a service the shim does not serve.
  const e3 = await failure(client.callRaw(TASK, 'Frobnicate', new Uint8Array(), { timeoutMs: 10_000 }));
  t.equal(e3.grpcCode, 12, 'unknown method: UNIMPLEMENTED');
  t.match(e3.message, /Frobnicate/, `naming the method: ${e3.message}`);
  const e4 = await failure(client.callRaw('containerd.task.v9.Nothing', 'State', new Uint8Array(), { timeoutMs: 10_000 }));
  t.equal(e4.grpcCode, 12, 'unknown service: UNIMPLEMENTED');
  t.match(e4.message, /containerd\.task\.v9\.Nothing/, `naming the service: ${e4.message}`);

  // Over the 4 MiB limit, sent raw (our client refuses to send it).
  const peer = await rawPeer(socket!);
  const big = toBinary(RequestSchema, create(RequestSchema, { service: TASK, method: 'Create', payload: Buffer.alloc(5 << 20, 0x41) }));
  peer.send(1, MessageType.REQUEST, big);
  const over = await peer.answer(1);
  t.equal(over.status?.code, 8, 'a 5 MiB request: RESOURCE_EXHAUSTED');
  t.match(over.status?.message, /exceed maximum message size of 4194304/, `with the limit: ${over.status?.message}`);
  peer.socket.destroy();

  // The shim and its container are unharmed.
  t.same(shimsOf(r), shim, 'the same shim still runs');
  const alive = await r.c.ctr(['task', 'exec', '--exec-id', 'alive', POD, 'echo', 'still-here'], { reject: false });
  t.equal(alive.stdout.trim(), 'still-here', 'the pod container still answers');
  const st = await client.call(Task.method.state, { id: POD }, { timeoutMs: 10_000 });
  t.equal(st.id, POD, 'and State answers on the same connection');
  client.close();

  await r.c.ctr(['task', 'kill', '-s', 'SIGKILL', POD], { reject: false });
  t.ok(await taskState(r, POD, 'STOPPED'), 'the pod stops');
  await r.c.ctr(['task', 'rm', POD], { reject: false });
  await r.c.ctr(['container', 'rm', POD], { reject: false });
  await nothingLeft(t, r);
});
