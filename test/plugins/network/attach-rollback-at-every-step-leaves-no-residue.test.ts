import t from 'tap';
import type { NetnsRef } from '../../../host/netns.js';
import type { PluginContext } from '../../../host/plugin.js';
import { attachEndpoint, createTap, type EndpointResources } from '../../../plugins/network/endpoint.js';
import type { Attached } from '../../../host/plugin.js';
import { readLink } from '../../../plugins/network/link-info.js';
import type { InternetworkingModel } from '../../../plugins/network/types.js';
import { tempNetns } from '../../helpers/netns.js';
import {
  FAILING_LINE,
  RewritingNetlink,
  waitLinkLocal,
  ipBatch,
  listDir,
  makeCtx,
  makeNetlink,
  podWithVeth,
  snapshot,
  type NetlinkKind,
} from './endpoint-fixtures.js';

/**
 * Every attach step is undone when a later one fails. Two kinds of failure:
 *  - the checkpoint() hook throws before a step (each named step in turn);
 *  - one line of a real ip/tc batch is rewritten into a line that fails in the kernel, so every other
 *    line of that batch really ran (real partial state), for each line in turn.
 * After each failure the namespace must be exactly as before and the run dir empty.
 */

interface Case {
  label: string;
  kind: NetlinkKind;
  setup: (t: Parameters<typeof tempNetns>[0]) => Promise<NetnsRef>;
  attach: (ctx: PluginContext) => Promise<Attached<EndpointResources>>;
}

const veth = async (t: Parameters<typeof tempNetns>[0]): Promise<NetnsRef> => {
  const { pod } = await podWithVeth(t);
  await ipBatch(pod, ['addr add fd00:5::2/64 dev eth0 nodad', 'route add 10.201.0.0/16 via 10.77.0.1 dev eth0']);
  return pod;
};
const macvlan = async (t: Parameters<typeof tempNetns>[0]): Promise<NetnsRef> => {
  const pod = await tempNetns(t, 'pod');
  await ipBatch(pod, [
    'link add low0 type veth peer name low1',
    'link set low1 up',
    'link add link low0 name eth0 type macvlan mode bridge',
    'addr add 10.80.0.2/24 dev eth0',
    'link set low0 up',
    'link set eth0 up',
  ]);
  await waitLinkLocal(pod, 'eth0');
  return pod;
};
const withTuntap = async (t: Parameters<typeof tempNetns>[0]): Promise<NetnsRef> => {
  const { pod } = await podWithVeth(t);
  await ipBatch(pod, ['tuntap add dev ctap0 mode tap', 'addr add 10.81.0.2/24 dev ctap0', 'link set ctap0 up']);
  return pod;
};
const withMacvtap = async (t: Parameters<typeof tempNetns>[0]): Promise<NetnsRef> => {
  const { pod } = await podWithVeth(t);
  await ipBatch(pod, ['link add link eth0 name mvt0 type macvtap mode bridge', 'link set mvt0 up']);
  return pod;
};
const scanned = (name: string, model: InternetworkingModel) => async (ctx: PluginContext) =>
  attachEndpoint(ctx, { link: await readLink(ctx, name), index: 0, model, queues: 2, vhost: true });

const cases: Case[] = [
  { label: 'veth/tcfilter (spawn)', kind: 'spawn', setup: veth, attach: scanned('eth0', 'tcfilter') },
  { label: 'veth/tcfilter (coprocess)', kind: 'coprocess', setup: veth, attach: scanned('eth0', 'tcfilter') },
  { label: 'veth/macvtap', kind: 'spawn', setup: veth, attach: scanned('eth0', 'macvtap') },
  { label: 'veth/macvtap (coprocess)', kind: 'coprocess', setup: veth, attach: scanned('eth0', 'macvtap') },
  { label: 'macvlan/tcfilter', kind: 'spawn', setup: macvlan, attach: scanned('eth0', 'tcfilter') },
  { label: 'macvlan/macvtap', kind: 'spawn', setup: macvlan, attach: scanned('eth0', 'macvtap') },
  { label: 'tuntap/tcfilter', kind: 'spawn', setup: withTuntap, attach: scanned('ctap0', 'tcfilter') },
  { label: 'existing macvtap', kind: 'spawn', setup: withMacvtap, attach: scanned('mvt0', 'tcfilter') },
  {
    label: 'tap on request',
    kind: 'spawn',
    setup: async (t) => (await podWithVeth(t)).pod,
    attach: (ctx) => createTap(ctx, { name: 'tap9_kata', mtu: 1400, queues: 2 }),
  },
];

for (const c of cases) {
  t.test(`${c.label}: a failure at each step leaves no residue`, async (t) => {
    const pod = await c.setup(t);
    const before = await snapshot(pod);

    // A successful run records the named steps and every batch line.
    const steps: string[] = [];
    const recorder = new RewritingNetlink(makeNetlink(t, c.kind));
    const ok = await makeCtx(t, pod, {
      netlink: recorder,
      faults: (s) => {
        steps.push(s);
      },
    });
    const a = await c.attach(ok);
    const attachLines = recorder.calls.reduce((n, call) => n + call.lines.length, 0);
    const { detachEndpoint } = await import('../../../plugins/network/endpoint.js');
    await detachEndpoint(ok, a);
    t.same(await snapshot(pod), before, 'baseline: attach + detach leaves the namespace as it was');
    t.ok(steps.length >= 2, `steps: ${steps.join(', ')}`);

    for (const step of steps) {
      const ctx = await makeCtx(t, pod, {
        kind: c.kind,
        faults: (s) => {
          if (s === step) throw new Error(`injected at ${s}`);
        },
      });
      await t.rejects(c.attach(ctx), { message: `injected at ${step}` }, `fails at ${step}`);
      t.same(await snapshot(pod), before, `nothing left after a failure at ${step}`);
      t.same(await listDir(ctx.runDir), [], `run dir empty after a failure at ${step}`);
    }

    for (let k = 0; k < attachLines; k++) {
      const nl = new RewritingNetlink(makeNetlink(t, c.kind));
      let n = 0;
      let failed = '';
      nl.rewrite = (tool, line) => {
        if (n++ !== k) return undefined;
        failed = `${tool} ${line}`;
        return { line: FAILING_LINE[tool], message: 'Error: injected failure' };
      };
      const ctx = await makeCtx(t, pod, { netlink: nl });
      await t.rejects(c.attach(ctx), { message: /injected failure/ }, `batch line ${k} fails`);
      t.same(
        await snapshot(pod),
        before,
        `nothing left when line ${k} (${failed.replace(/kr-tmp[0-9a-f]+/, 'kr-tmp*')}) failed and the others ran`,
      );
      t.same(await listDir(ctx.runDir), []);
    }
  });
}
