/**
 * Design review F1: the scan and attach once classified links with two functions that disagreed.
 * A regular file (not a socket) at Kata's vhost-user path /tmp/vhostuser_<IP>/vhu.sock made the scan
 * say "virtual" and attach say "vhost-user": no tap was made and QEMU would have been handed a file
 * as a socket. One classifier now decides for both; this checks both paths on a real veth.
 */
import t from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachEndpoint, checkEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import { readLink } from '../../../plugins/network/link-info.js';
import { scanNetns } from '../../../plugins/network/scan.js';
import { links } from '../../helpers/netns.js';
import { makeCtx, podWithVeth, snapshot } from './endpoint-fixtures.js';

t.test('scan and attach agree: a plain file at the vhost-user path is a veth endpoint and gets a tap with redirects', async (t) => {
  const { pod } = await podWithVeth(t, { podAddr: '10.77.0.2/24' });
  const dir = await mkdtemp(join(tmpdir(), 'krt-vhu-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'vhostuser_10.77.0.2'));
  await writeFile(join(dir, 'vhostuser_10.77.0.2', 'vhu.sock'), 'not a socket');
  const ctx = await makeCtx(t, pod);
  const before = await snapshot(pod);

  const scan = await scanNetns(ctx, { vhostUserDir: dir });
  t.same(
    scan.endpoints.map((e) => [e.link.name, e.type]),
    [['eth0', 'virtual']],
    'the scan calls it a veth endpoint',
  );

  // Attach as the sandbox does (the scan's type) and as kata-cni does (no type: attach classifies).
  for (const [how, req] of [
    ['with the scan type', { type: scan.endpoints[0]!.type }],
    ['classified by attach', {}],
  ] as const) {
    const link = await readLink(ctx, 'eth0');
    const a = await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false, ...req }, { vhostUserDir: dir });
    t.equal(a.resources.type, 'virtual', `${how}: attach agrees`);
    t.match(a.devices, [{ kind: 'net-tap', ifname: 'tap0_kata' }], `${how}: the VMM gets a tap, not a vhost-user socket`);
    t.ok(
      (await links(pod)).some((l) => l.ifname === 'tap0_kata'),
      `${how}: tap0_kata exists in the pod namespace`,
    );
    t.same(await checkEndpoint(ctx, a), [], `${how}: tap, qdiscs and both redirects in place`);
    await detachEndpoint(ctx, a);
    t.same(await snapshot(pod), before, `${how}: detach leaves the namespace as it was`);
  }
});
