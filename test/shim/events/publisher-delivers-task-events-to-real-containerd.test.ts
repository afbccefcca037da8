import t from 'tap';
import { existsSync } from 'node:fs';
import { sleep } from '../../../host/retry.js';
import { silentLogger } from '../../../host/log.js';
import { EventPublisher } from '../../../shim/events/publisher.js';
import { TaskExitSchema, TaskOOMSchema, TaskStartSchema } from '../../../shim/generated/containerd/api/events/task_pb.js';
import { Events } from '../../../shim/generated/containerd/api/services/ttrpc/events/v1/events_pb.js';
import { TtrpcClient } from '../../../ttrpc/client.js';
import { containerdUnavailable, startContainerd } from '../../cni/helpers/containerd.js';
import { tempNetns } from '../../helpers/netns.js';

/**
 * Interop with the Go implementation: Debian's containerd 1.6.20 (private root, state, sockets
 * and mount namespace, see the helper) receives our events on its ttRPC socket, the one it hands
 * shims as $TTRPC_ADDRESS; `ctr events`, subscribed over gRPC, shows what containerd made of them.
 * Its ttRPC server's error statuses come back through our client with Go's codes and messages.
 */
const why = containerdUnavailable();

/** `ctr events` lines: "<timestamp> <namespace> <topic> <event JSON>". */
function parseEvents(out: string): { namespace: string; topic: string; event: Record<string, unknown> }[] {
  const events = [];
  for (const line of out.split('\n')) {
    const m = /^\S+ \S+ \S+ \S+ (\S+) (\/\S+) (\{.*\})$/.exec(line.trim());
    if (m) events.push({ namespace: m[1]!, topic: m[2]!, event: JSON.parse(m[3]!) as Record<string, unknown> });
  }
  return events;
}

t.test(
  'containerd receives TaskStart and TaskExit from the publisher, in order',
  { skip: why ? `containerd cannot run here: ${why}` : false },
  async (t) => {
    const host = await tempNetns(t, 'evts');
    const c = await startContainerd(t, host);
    t.ok(existsSync(c.ttrpcSocket), `containerd serves ttRPC at ${c.ttrpcSocket}`);
    const watcher = c.spawnCtr(['events']);
    t.teardown(() => {
      if (watcher.exitCode === null) watcher.kill('SIGKILL');
    });
    const publisher = new EventPublisher({ address: c.ttrpcSocket, namespace: 'krt', logger: silentLogger() });
    t.teardown(() => publisher.close({ timeoutMs: 2000 }));

    // `ctr events` gives no sign once it is subscribed: publish probes until one shows.
    for (let i = 0; !parseEvents(watcher.output()).some((e) => e.topic === '/tasks/oom'); i++) {
      if (i > 150) throw new Error(`ctr events showed no probe: ${watcher.output()}`);
      t.equal(await publisher.publish(TaskOOMSchema, { containerId: `probe-${i}` }), true, `probe ${i} forwarded`);
      await sleep(200);
    }

    const [started, exited] = await Promise.all([
      publisher.publish(TaskStartSchema, { containerId: 'krt-c1', pid: 4242 }),
      publisher.publish(TaskExitSchema, {
        containerId: 'krt-c1',
        id: 'krt-c1',
        pid: 4242,
        exitStatus: 137,
        exitedAt: { seconds: 1_700_000_000n, nanos: 123_000_000 },
      }),
    ]);
    t.same([started, exited], [true, true], 'containerd accepted both');
    let seen = parseEvents(watcher.output()).filter((e) => e.event.container_id === 'krt-c1');
    for (let i = 0; seen.length < 2 && i < 100; i++) {
      await sleep(100);
      seen = parseEvents(watcher.output()).filter((e) => e.event.container_id === 'krt-c1');
    }
    t.same(
      seen.map((e) => [e.namespace, e.topic]),
      [
        ['krt', '/tasks/start'],
        ['krt', '/tasks/exit'],
      ],
      'ctr events shows start then exit, in namespace krt',
    );
    t.match(seen[0]?.event, { container_id: 'krt-c1', pid: 4242 }, 'TaskStart fields');
    t.match(
      seen[1]?.event,
      { container_id: 'krt-c1', id: 'krt-c1', pid: 4242, exit_status: 137, exited_at: /^2023-11-14T22:13:20\.123Z$/ },
      'TaskExit fields, exited_at included',
    );
  },
);

t.test(
  "containerd's ttRPC errors reach our client with Go's codes",
  { skip: why ? `containerd cannot run here: ${why}` : false },
  async (t) => {
    const host = await tempNetns(t, 'evte');
    const c = await startContainerd(t, host);
    const client = await TtrpcClient.connect(c.ttrpcSocket);
    t.teardown(() => client.close());
    await t.rejects(client.callRaw('containerd.services.events.ttrpc.v1.Events', 'Teleport', new Uint8Array()), {
      code: 'E_TTRPC',
      grpcCode: 12,
      message: 'method Teleport',
    });
    await t.rejects(client.callRaw('containerd.nope.v1.Nope', 'Forward', new Uint8Array()), {
      code: 'E_TTRPC',
      grpcCode: 12,
      message: 'service containerd.nope.v1.Nope',
    });
    const event = { typeUrl: TaskOOMSchema.typeName, value: new Uint8Array() };
    await t.rejects(
      client.call(Events.method.forward, { envelope: { namespace: 'krt', topic: '/tasks/oom', event } }, { timeoutMs: 5000 }),
      { code: 'E_TTRPC', grpcCode: 3, message: /timestamp/ },
      'an envelope without a timestamp: INVALID_ARGUMENT (why the publisher always stamps)',
    );
    await t.rejects(
      client.call(Events.method.forward, {
        envelope: { timestamp: { seconds: 1n }, namespace: 'krt', topic: 'no-slash', event },
      }),
      { code: 'E_TTRPC', grpcCode: 3 },
      'a topic without a leading slash: INVALID_ARGUMENT',
    );
    const ok = await client.call(
      Events.method.forward,
      { envelope: { timestamp: { seconds: 1_700_000_000n }, namespace: 'krt', topic: '/tasks/oom', event } },
      { metadata: { 'containerd-namespace-ttrpc': 'krt' } },
    );
    t.equal(ok.$typeName, 'google.protobuf.Empty', 'a valid Forward answers Empty');
  },
);
