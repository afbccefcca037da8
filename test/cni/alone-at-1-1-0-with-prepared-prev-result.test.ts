import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { run } from '../../host/exec.js';
import { deleteNetns } from '../../host/netns.js';
import { tempNetns, vethPair } from '../helpers/netns.js';
import { filesUnder, installKataCni, invoke, tempDir, type Invocation, type RuntimeOptions } from './helpers/cni-runtime.js';
import { ingressDevs, namesIn, redirectState } from './helpers/inspect.js';

/**
 * kata-cni on its own at cniVersion 1.1.0 (Debian's plugins stop at 1.0.0), with a prevResult as a
 * 1.1.0 plugin would have produced it for a veth the test made: the 1.1.0-only fields pass through,
 * the tap entry carries its MTU, CHECK notices what breaks, and DEL/GC clean up in every situation
 * the spec names.
 */
const bin = await installKataCni(t);
const KATA = join(bin, 'kata-cni');

interface Pod {
  host: Awaited<ReturnType<typeof tempNetns>>;
  pod: Awaited<ReturnType<typeof tempNetns>>;
  opts: RuntimeOptions;
  prev: Record<string, unknown>;
  mac: string;
}

async function pod(tt: { teardown(fn: () => unknown): void }, mtu = 1450): Promise<Pod> {
  const host = await tempNetns(tt, 'k11h');
  const pod = await tempNetns(tt, 'k11p');
  const mac = '02:42:0a:4d:00:02';
  const { peer } = await vethPair(pod, host, { mtu, mac });
  const prev = {
    cniVersion: '1.1.0',
    interfaces: [
      { name: peer, mac: '02:00:00:00:00:01' },
      { name: 'eth0', mac, mtu, sandbox: pod.path },
    ],
    ips: [{ address: '10.77.0.2/24', gateway: '10.77.0.1', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.77.0.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 }],
    dns: { nameservers: ['10.77.0.1'], domain: 'cluster.local', search: ['svc.cluster.local'], options: ['ndots:2'] },
  };
  return { host, pod, opts: { hostNs: host, path: [bin] }, prev, mac };
}

function conf(stateDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.1.0', name: 'krt-k11', type: 'kata-cni', stateDir, ...extra };
}

async function kata(
  command: string,
  p: Pod,
  c: Record<string, unknown>,
  att: { containerId?: string; netns?: string; ifname?: string; args?: string } = {},
): Promise<Invocation> {
  return invoke(KATA, command, { containerId: 'krtc11', netns: p.pod.path, ifname: 'eth0', ...att }, JSON.stringify(c), p.opts);
}

t.test('ADD returns prevResult with its 1.1.0 fields plus the tap with mtu; tap options from config; CHECK healthy', async (t) => {
  const p = await pod(t);
  const stateDir = tempDir(t, 'k11s');
  const add = await kata('ADD', p, conf(stateDir, { tapName: '{ifname}_kt', queues: 2, owner: 1234, group: 2345, prevResult: p.prev }));
  t.equal(add.exitCode, 0, add.stdout);
  t.equal(add.stderr, '', 'nothing on stderr when logging is not configured');
  const st = await redirectState(p.pod, 'eth0', 'eth0_kt');
  const expected = {
    ...p.prev,
    interfaces: [...(p.prev.interfaces as object[]), { name: 'eth0_kt', mac: st.tap?.mac, mtu: 1450, sandbox: p.pod.path }],
  };
  t.same(add.json, expected, 'prevResult unchanged (route mtu/advmss/priority/table/scope, interface mtu, dns) + the tap with mtu');
  t.match(
    st.tap,
    { kind: 'tun', mode: 'tap', mtu: 1450, up: true, multiQueue: true, owner: 1234, group: 2345 },
    'multi-queue tap owned by uid/gid from the config',
  );
  t.same(st.redirects, ['eth0>eth0_kt', 'eth0_kt>eth0']);
  t.equal(st.link?.mac, p.mac, 'eth0 keeps its MAC');

  const check = await kata('CHECK', p, conf(stateDir, { tapName: '{ifname}_kt', prevResult: add.json }));
  t.equal(check.exitCode, 0, `CHECK healthy ${check.stdout}`);
  t.equal(check.stdout, '', 'CHECK prints nothing on success');

  const del = await kata('DEL', p, conf(stateDir, { tapName: '{ifname}_kt', prevResult: add.json }));
  t.equal(del.exitCode, 0, del.stdout);
  t.same(await namesIn(p.pod), ['eth0', 'lo'], 'the tap is gone, the veth (not ours) stays');
  t.same(await ingressDevs(p.pod), [], 'no ingress qdisc left');
  t.same(filesUnder(stateDir), []);
});

t.test('CHECK names what is missing or wrong: a redirect filter, the tap MTU, the tap MAC in the result', async (t) => {
  const p = await pod(t);
  const stateDir = tempDir(t, 'k11s');
  const add = await kata('ADD', p, conf(stateDir, { prevResult: p.prev }));
  t.equal(add.exitCode, 0, add.stdout);
  await run('tc', ['-n', p.pod.name!, 'filter', 'del', 'dev', 'eth0', 'parent', 'ffff:', 'pref', '19265']);
  await run('ip', ['-n', p.pod.name!, 'link', 'set', 'tap0_kata', 'mtu', '1300']);
  const result = add.json as { interfaces: { name: string; mac?: string }[] };
  const doctored = {
    ...result,
    interfaces: result.interfaces.map((i) => (i.name === 'tap0_kata' ? { ...i, mac: '02:11:22:33:44:55' } : i)),
  };
  const check = await kata('CHECK', p, conf(stateDir, { prevResult: doctored }));
  t.equal(check.exitCode, 1);
  t.equal(check.json?.code, 120);
  t.equal(check.json?.cniVersion, '1.1.0');
  t.match(check.json?.msg, /redirect filter eth0 -> tap0_kata is missing/);
  t.match(check.json?.msg, /MTU mismatch: tap0_kata has 1300, eth0 has 1450/);
  t.match(check.json?.msg, /MAC mismatch: tap tap0_kata has [0-9a-f:]+, the result reported 02:11:22:33:44:55/);
  t.equal((await kata('DEL', p, conf(stateDir, { prevResult: result }))).exitCode, 0);
  t.same(await ingressDevs(p.pod), []);
  t.same(await namesIn(p.pod), ['eth0', 'lo']);
});

t.test(
  'DEL without the attachment record (state wiped) still removes filters, qdiscs and the tap, with or without prevResult',
  async (t) => {
    for (const withPrev of [true, false]) {
      const p = await pod(t);
      const stateDir = tempDir(t, 'k11s');
      const add = await kata('ADD', p, conf(stateDir, { prevResult: p.prev }));
      t.equal(add.exitCode, 0, add.stdout);
      rmSync(join(stateDir, 'krt-k11'), { recursive: true });
      const del = await kata('DEL', p, conf(stateDir, withPrev ? { prevResult: add.json } : {}));
      t.equal(del.exitCode, 0, del.stdout);
      t.same(await namesIn(p.pod), ['eth0', 'lo'], `tap removed (${withPrev ? 'with' : 'without'} prevResult)`);
      t.same(await ingressDevs(p.pod), [], 'ingress qdiscs removed');
    }
  },
);

t.test('DEL without a record leaves a foreign ingress qdisc and foreign filters alone', async (t) => {
  const p = await pod(t);
  const stateDir = tempDir(t, 'k11s');
  const add = await kata('ADD', p, conf(stateDir, { prevResult: p.prev }));
  t.equal(add.exitCode, 0, add.stdout);
  rmSync(join(stateDir, 'krt-k11'), { recursive: true });
  // Somebody else's filter on eth0's ingress (another priority; a plain classifying u32, no action module needed).
  await run('tc', [
    '-n',
    p.pod.name!,
    'filter',
    'add',
    'dev',
    'eth0',
    'parent',
    'ffff:',
    'protocol',
    'all',
    'pref',
    '7',
    'u32',
    'match',
    'u8',
    '0',
    '0',
    'flowid',
    ':1',
  ]);
  const del = await kata('DEL', p, conf(stateDir));
  t.equal(del.exitCode, 0, del.stdout);
  t.same(await ingressDevs(p.pod), ['eth0'], 'the ingress qdisc with a foreign filter stays');
  const f = JSON.parse((await run('tc', ['-n', p.pod.name!, '-j', 'filter', 'show', 'dev', 'eth0', 'parent', 'ffff:'])).stdout) as {
    pref: number;
  }[];
  t.same([...new Set(f.map((x) => x.pref))], [7], 'only our filter (pref 19265) was removed');
  t.same(await namesIn(p.pod), ['eth0', 'lo'], 'our tap was removed');
});

t.test('DEL succeeds repeated, with CNI_NETNS empty, without prevResult, and after the namespace is gone', async (t) => {
  const p = await pod(t);
  const stateDir = tempDir(t, 'k11s');
  const add = await kata('ADD', p, conf(stateDir, { prevResult: p.prev }));
  t.equal(add.exitCode, 0, add.stdout);
  const empty = await kata('DEL', p, conf(stateDir), { netns: '' });
  t.equal(empty.exitCode, 0, empty.stdout);
  t.same(await namesIn(p.pod), ['eth0', 'lo'], "with CNI_NETNS empty the record's namespace (same inode) is cleaned");
  t.same(filesUnder(stateDir), []);
  for (const att of [{}, { netns: '' }, { netns: '/run/netns/krt-never-existed' }]) {
    const again = await kata('DEL', p, conf(stateDir), att);
    t.equal(again.exitCode, 0, `repeated DEL ${JSON.stringify(att)}: ${again.stdout}`);
    t.equal(again.stdout, '');
  }

  const add2 = await kata('ADD', p, conf(stateDir, { prevResult: p.prev }));
  t.equal(add2.exitCode, 0, add2.stdout);
  await deleteNetns(p.pod);
  const gone = await kata('DEL', p, conf(stateDir, { prevResult: add2.json }));
  t.equal(gone.exitCode, 0, `DEL after the namespace is gone: ${gone.stdout}`);
  t.same(filesUnder(stateDir), [], 'record removed');
});

t.test('GC removes the taps and redirects of attachments not listed, under either key; without a list it removes nothing', async (t) => {
  const a = await pod(t);
  const b = await pod(t);
  const stateDir = tempDir(t, 'k11s');
  t.equal((await kata('ADD', a, conf(stateDir, { prevResult: a.prev }), { containerId: 'krtgc-a' })).exitCode, 0);
  t.equal((await kata('ADD', b, conf(stateDir, { prevResult: b.prev }), { containerId: 'krtgc-b' })).exitCode, 0);

  const nolist = await invoke(KATA, 'GC', {}, JSON.stringify(conf(stateDir)), a.opts);
  t.equal(nolist.json?.code, 7, 'GC without cni.dev/valid-attachments is refused');
  t.match(nolist.json?.msg, /cni\.dev\/valid-attachments/);
  t.same(filesUnder(stateDir).length, 2, 'nothing removed');

  const gc = await invoke(
    KATA,
    'GC',
    {},
    JSON.stringify(conf(stateDir, { 'cni.dev/valid-attachments': [{ containerID: 'krtgc-a', ifname: 'eth0' }] })),
    a.opts,
  );
  t.equal(gc.exitCode, 0, gc.stdout);
  t.same(await namesIn(b.pod), ['eth0', 'lo'], 'unlisted attachment: tap removed');
  t.same(await ingressDevs(b.pod), [], 'unlisted attachment: qdiscs removed');
  t.same((await redirectState(a.pod, 'eth0', 'tap0_kata')).redirects, ['eth0>tap0_kata', 'tap0_kata>eth0'], 'listed attachment untouched');
  t.same(filesUnder(stateDir), ['krt-k11/krtgc-a@eth0.json']);

  const old = await invoke(KATA, 'GC', {}, JSON.stringify(conf(stateDir, { 'cni.dev/attachments': [] })), a.opts);
  t.equal(old.exitCode, 0, old.stdout);
  t.same(await namesIn(a.pod), ['eth0', 'lo'], 'the older key cni.dev/attachments works too');
  t.same(filesUnder(stateDir), []);
});

t.test('STATUS: ready here; not ready (code 50) names the reason', async (t) => {
  const p = await pod(t);
  const dir = tempDir(t, 'k11s');
  const ok = await invoke(KATA, 'STATUS', {}, JSON.stringify(conf(join(dir, 'state'))), p.opts);
  t.equal(ok.exitCode, 0, ok.stdout);
  t.equal(ok.stdout, '');
  writeFileSync(join(dir, 'file'), 'x');
  const bad = await invoke(KATA, 'STATUS', {}, JSON.stringify(conf(join(dir, 'file', 'state'))), p.opts);
  t.equal(bad.json?.code, 50);
  t.match(bad.json?.msg, /state directory .*file\/state cannot be created or written/);
  // A PATH with node only (the plugin's shebang needs it), no iproute2.
  const nodeOnly = join(dir, 'nodeonly');
  mkdirSync(nodeOnly);
  symlinkSync(process.execPath, join(nodeOnly, 'node'));
  const noTools = await invoke(KATA, 'STATUS', {}, JSON.stringify(conf(join(dir, 'state'))), p.opts, { PATH: nodeOnly });
  t.equal(noTools.json?.code, 50);
  t.match(noTools.json?.msg, /ip is not on PATH \(install iproute2\).*tc is not on PATH/);
});

t.test('commands refuse versions that predate them: CHECK before 0.4.0, GC and STATUS before 1.1.0 (code 1)', async (t) => {
  const p = await pod(t);
  const stateDir = tempDir(t, 'k11s');
  const check = await kata('CHECK', p, { ...conf(stateDir), cniVersion: '0.3.1', prevResult: p.prev });
  t.match(check.json, { code: 1, msg: /does not allow CHECK/ });
  for (const cmd of ['GC', 'STATUS']) {
    const r = await invoke(KATA, cmd, {}, JSON.stringify({ ...conf(stateDir), cniVersion: '1.0.0' }), p.opts);
    t.match(r.json, { code: 1, msg: new RegExp(`does not allow ${cmd}`) });
  }
});

t.test('CNI_ARGS and args.cni override the config (args.cni last); unknown CNI_ARGS keys need IgnoreUnknown', async (t) => {
  const p = await pod(t);
  const stateDir = tempDir(t, 'k11s');
  const base = conf(stateDir, { tapName: 'tapcfg{index}', owner: 1, prevResult: p.prev });
  const add = await kata(
    'ADD',
    p,
    { ...base, args: { cni: { owner: 4242 } } },
    { args: 'IgnoreUnknown=1;K8S_POD_NAME=x;KATA_TAP_NAME=vm{index}tap;KATA_TAP_UID=77;TC_REDIRECT_TAP_GID=88;SOMETHING=else' },
  );
  t.equal(add.exitCode, 0, add.stdout);
  const st = await redirectState(p.pod, 'eth0', 'vm0tap');
  t.match(st.tap, { kind: 'tun', owner: 4242, group: 88 }, 'tap name from CNI_ARGS, uid from args.cni over CNI_ARGS, gid from CNI_ARGS');
  const del = await kata('DEL', p, { ...base, args: { cni: { owner: 4242 } } }, { args: 'IgnoreUnknown=1;KATA_TAP_NAME=vm{index}tap' });
  t.equal(del.exitCode, 0, del.stdout);
  t.same(await namesIn(p.pod), ['eth0', 'lo']);

  const unknown = await kata('ADD', p, base, { args: 'SOMETHING=else' });
  t.match(unknown.json, { code: 4, msg: /CNI_ARGS: unknown key "SOMETHING"/ });
  const badUid = await kata('ADD', p, base, { args: 'KATA_TAP_UID=-3' });
  t.match(badUid.json, { code: 4, msg: /KATA_TAP_UID=-3 must be an integer/ });
  t.same(await namesIn(p.pod), ['eth0', 'lo'], 'refused ADDs leave nothing');
  t.same(filesUnder(stateDir), []);
});

t.test(
  'model macvtap: a macvtap with the pod MAC and a private device node; CHECK healthy; DEL gives eth0 its MAC and address back',
  async (t) => {
    const p = await pod(t);
    const stateDir = tempDir(t, 'k11s');
    const c = conf(stateDir, { model: 'macvtap', prevResult: p.prev });
    const add = await kata('ADD', p, c);
    t.equal(add.exitCode, 0, add.stdout);
    const st = await redirectState(p.pod, 'eth0', 'tap0_kata');
    t.equal(st.tap?.kind, 'macvtap', 'tap0_kata is a macvtap');
    t.equal(st.tap?.mac, p.mac, 'the macvtap carries the pod MAC (the guest MAC)');
    t.not(st.link?.mac, p.mac, 'eth0 got another MAC');
    const entry = (add.json?.interfaces as { name: string; mac?: string; mtu?: number }[] | undefined)?.at(-1);
    t.match(entry, { name: 'tap0_kata', mac: p.mac, mtu: 1450 });
    t.ok(
      filesUnder(stateDir).some((f) => /krtc11@eth0\.d\/macvtap-0-tap0_kata$/.test(f)),
      'device node in the attachment run dir',
    );
    const check = await kata('CHECK', p, { ...c, prevResult: add.json });
    t.equal(check.exitCode, 0, check.stdout);
    const del = await kata('DEL', p, { ...c, prevResult: add.json });
    t.equal(del.exitCode, 0, del.stdout);
    const after = await redirectState(p.pod, 'eth0', 'tap0_kata');
    t.equal(after.tap, undefined, 'macvtap removed');
    t.equal(after.link?.mac, p.mac, 'eth0 has its MAC back');
    t.match(
      await run('ip', ['-n', p.pod.name!, 'addr', 'show', 'dev', 'eth0']).then((r) => r.stdout),
      /10\.77\.0\.2\/24/,
      'and its address',
    );
    t.same(filesUnder(stateDir), [], 'record and device node removed');
  },
);

t.test(
  'a corrupt attachment record: DEL rebuilds from the kernel and succeeds; GC reports it (code 121) and still removes the others',
  async (t) => {
    const p = await pod(t);
    const q = await pod(t);
    const stateDir = tempDir(t, 'k11s');
    t.equal((await kata('ADD', p, conf(stateDir, { prevResult: p.prev }), { containerId: 'krtbroken' })).exitCode, 0);
    writeFileSync(join(stateDir, 'krt-k11', 'krtbroken@eth0.json'), '{not json');
    const del = await kata('DEL', p, conf(stateDir), { containerId: 'krtbroken' });
    t.equal(del.exitCode, 0, del.stdout);
    t.same(await namesIn(p.pod), ['eth0', 'lo'], 'tap removed');
    t.same(filesUnder(stateDir), [], 'the corrupt record is removed too');

    t.equal((await kata('ADD', q, conf(stateDir, { prevResult: q.prev }), { containerId: 'krtstale' })).exitCode, 0);
    writeFileSync(join(stateDir, 'krt-k11', 'krtjunk@eth0.json'), 'junk');
    const gc = await invoke(KATA, 'GC', {}, JSON.stringify(conf(stateDir, { 'cni.dev/valid-attachments': [] })), q.opts);
    t.equal(gc.json?.code, 121, gc.stdout);
    t.match(gc.json?.msg, /krtjunk@eth0\.json.*not valid JSON/, 'msg names the one failure');
    t.equal(gc.json?.details, undefined, 'details would only repeat msg, so there are none');
    t.same(await namesIn(q.pod), ['eth0', 'lo'], 'the stale attachment was still removed');
    t.same(filesUnder(stateDir), ['krt-k11/krtjunk@eth0.json'], 'only the unreadable file is left for a human');
  },
);
