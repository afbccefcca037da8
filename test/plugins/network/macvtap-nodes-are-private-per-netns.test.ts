import t from 'tap';
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { run } from '../../../host/exec.js';
import { attachEndpoint, checkEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import { readLink } from '../../../plugins/network/link-info.js';
import { splitDevNumber } from '../../../plugins/network/models/macvtap.js';
import { ipBatch, listDir, makeCtx, podWithVeth } from './endpoint-fixtures.js';

/**
 * /dev/tap<ifindex> is global while ifindexes are per namespace (perf-baselines §3): two sandboxes'
 * macvtaps with the same ifindex must each get their own node with their own major:minor.
 */
t.test('two namespaces with a macvtap of the same ifindex get distinct private nodes', async (t) => {
  const pods = [await podWithVeth(t), await podWithVeth(t)];
  const attached = [];
  for (const { pod } of pods) {
    await ipBatch(pod, ['link add link eth0 name mvt0 index 42 type macvtap mode bridge', 'link set mvt0 up']);
    const ctx = await makeCtx(t, pod);
    const link = await readLink(ctx, 'mvt0');
    t.equal(link.index, 42, `${pod.name}: macvtap has ifindex 42`);
    const a = await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false });
    t.equal(a.resources.type, 'macvtap', 'an existing macvtap is a macvtap endpoint');
    t.same(await checkEndpoint(ctx, a), []);
    const ifi = (await run('ip', ['netns', 'exec', pod.name!, 'cat', '/sys/class/net/mvt0/macvtap/tap42/dev'])).stdout.trim();
    const st = await stat(a.resources.devNode!);
    const { major, minor } = splitDevNumber(st.rdev);
    t.equal(`${major}:${minor}`, ifi, `${pod.name}: node has the namespace's own major:minor`);
    t.equal(a.resources.devNumber, ifi);
    attached.push({ ctx, a, dev: ifi });
  }
  t.not(attached[0]!.dev, attached[1]!.dev, 'the two macvtaps have different device numbers');
  t.not(attached[0]!.a.resources.devNode, attached[1]!.a.resources.devNode, 'different node paths');
  if (existsSync('/dev/tap42')) {
    const g = splitDevNumber((await stat('/dev/tap42')).rdev);
    const matches = attached.filter((x) => x.dev === `${g.major}:${g.minor}`).length;
    t.ok(matches <= 1, `the global /dev/tap42 (${g.major}:${g.minor}) can stand for only one of them`);
  }
  for (const { ctx, a } of attached) {
    await detachEndpoint(ctx, a);
    t.same(await listDir(ctx.runDir), [], 'node removed on detach');
    t.ok((await readLink(ctx, 'mvt0')).index === 42, 'the existing macvtap is left alone');
  }
});

t.test('macvtap model: two sandboxes get nodes matching their own sysfs', async (t) => {
  const devs: string[] = [];
  for (let i = 0; i < 2; i++) {
    const { pod } = await podWithVeth(t);
    const ctx = await makeCtx(t, pod);
    const a = await attachEndpoint(ctx, { link: await readLink(ctx, 'eth0'), index: 0, model: 'macvtap', queues: 1, vhost: false });
    t.teardown(() => detachEndpoint(ctx, a));
    const idx = (await readLink(ctx, 'tap0_kata')).index;
    const sys = (await run('ip', ['netns', 'exec', pod.name!, 'cat', `/sys/class/net/tap0_kata/macvtap/tap${idx}/dev`])).stdout.trim();
    t.equal(a.resources.devNumber, sys);
    devs.push(sys);
  }
  t.not(devs[0], devs[1]);
});

t.test('a namespace known only by path reads sysfs through nsenter + a private sysfs mount', async (t) => {
  const { pod } = await podWithVeth(t);
  const ctx = await makeCtx(t, { path: pod.path });
  const named = await makeCtx(t, pod);
  const a = await attachEndpoint(ctx, { link: await readLink(named, 'eth0'), index: 0, model: 'macvtap', queues: 1, vhost: false });
  const idx = (await readLink(named, 'tap0_kata')).index;
  const sys = (await run('ip', ['netns', 'exec', pod.name!, 'cat', `/sys/class/net/tap0_kata/macvtap/tap${idx}/dev`])).stdout.trim();
  t.equal(a.resources.devNumber, sys);
  t.same(await checkEndpoint(ctx, a), []);
  await detachEndpoint(ctx, a);
  t.notOk((await run('ip', ['-n', pod.name!, 'link', 'show'])).stdout.includes('tap0_kata'));
});
