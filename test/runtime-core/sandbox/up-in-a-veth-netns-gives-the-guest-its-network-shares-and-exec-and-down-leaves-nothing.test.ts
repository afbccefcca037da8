/**
 * The acceptance end-to-end test of the runtime core, through the real CLI (one VM boot under TCG):
 * a pod namespace with a veth as a CNI plugin would leave it (IPv4 + IPv6, MTU 1400, default
 * routes, a permanent neighbour), `sandbox up`, what the guest reports, a ping from the guest to the
 * host side through the tc redirect, host directories shared read-write and read-only over virtio-fs,
 * `exec` relaying output and exit codes, `sandbox list`, then `sandbox down` and a residue check.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Interface, Route } from '../../../host/agent-types.js';
import { run } from '../../../host/exec.js';
import {
  cli,
  ourLinks,
  ourQdiscs,
  parseJson,
  podNetwork,
  processesMentioning,
  residue,
  tempRuntime,
  viewPids,
  explain,
} from '../../helpers/sandbox.js';

interface View {
  id: string;
  state: string;
  pids: Record<string, number>;
  netns: { name?: string; created: boolean };
  endpoints: { name: string; tap?: string; mac: string; mtu: number; addresses: string[] }[];
  shares: { tag: string; hostDir: string; guestMountPoint: string }[];
  volumes?: { name: string }[];
  accel?: string;
  supervisor?: string;
  guest?: { interfaces: Interface[]; routes: Route[]; mounts: { fstype: string; mount_point: string }[] };
}

t.test('sandbox up in a pod netns: guest network, ping, shares, exec, list; down leaves nothing', async (t) => {
  const rt = tempRuntime(t);
  const net = await podNetwork(t, {
    mtu: 1400,
    v4: '10.77.0.2/24',
    gw4: '10.77.0.1',
    v6: 'fd77::2/64',
    gw6: 'fd77::1',
    neighbour: { ip: '10.77.0.9', lladdr: '02:00:00:77:00:09' },
  });
  // A read-write share must sit below a directory other users cannot search (mkdtemp's 0700).
  const hostParent = mkdtempSync(join(tmpdir(), 'krt-share-'));
  t.teardown(() => rmSync(hostParent, { recursive: true, force: true }));
  const hostDir = join(hostParent, 'dir');
  mkdirSync(hostDir);
  writeFileSync(join(hostDir, 'hello.txt'), 'hello from the host\n');
  const id = `krt-e2e-${process.pid}`;
  const C = ['--config', rt.config];

  const up = await cli(['sandbox', 'up', '--netns', net.pod.name!, '--id', id, ...C, '--json'], { timeoutMs: 240_000 });
  if (up.code !== 0) {
    t.fail(`sandbox up failed: ${explain(up)}`);
    return;
  }
  t.equal(up.stdout.trim().split('\n').length, 1, 'up --json prints one line');
  const sb = parseJson<View>(up);
  t.equal(sb.id, id, 'the JSON object is the sandbox');
  t.equal(sb.state, 'running', 'it is running');
  t.equal(sb.netns.name, net.pod.name, 'in the caller-owned namespace');
  t.equal(sb.netns.created, false, 'which it did not create');
  t.ok(sb.pids.qemu && sb.pids.virtiofsd && sb.pids.supervisor, `pids of qemu, virtiofsd and supervisor: ${JSON.stringify(sb.pids)}`);
  const pids = viewPids(sb);
  t.equal(sb.endpoints.length, 1, 'one endpoint');
  const ep = sb.endpoints[0]!;
  t.equal(ep.mac, net.mac, 'endpoint carries the veth MAC');
  t.equal(ep.mtu, 1400, 'and its MTU');
  t.ok(ep.tap && /_kata$/.test(ep.tap), `tap ${ep.tap}`);
  t.equal(sb.shares.length, 1, 'one virtio-fs share');

  // The tc redirect exists while running (so the residue check after down is meaningful).
  t.same(await ourLinks(net.pod), [ep.tap], 'the tap is in the pod namespace while running');
  t.same(await ourQdiscs(net.pod, net.ifname), ['ingress'], 'an ingress qdisc is on the veth while running');
  // The residue check sees every kind of thing a running sandbox has (so its empty answer after down means something).
  const live = await residue(rt, { id, pids, pod: { ns: net.pod, dev: net.ifname } });
  for (const [what, re] of [
    ['recorded processes', /^process \d+ alive$/],
    ['mounts', /^mount /],
    ['sockets', /^socket /],
    ['the state dir', /^state dir /],
    ['the shared tree', /^shared dir /],
    ['the tap', /^link .*_kata in /],
    ['the ingress qdisc', /^ingress qdisc on /],
  ] as const)
    t.ok(
      live.some((l) => re.test(l)),
      `while running, the residue check lists ${what}`,
    );
  const mentioning = processesMentioning(rt.dir).map((p) => p.pid);
  t.ok(
    pids.every((p) => mentioning.includes(p)),
    'qemu, virtiofsd and the supervisor are found by the runtime dir in their command lines (teardown kills them by that)',
  );

  t.test('status shows the guest interface, addresses, MTU and routes', async (t) => {
    const st = await cli(['sandbox', 'status', id, ...C, '--json']);
    t.equal(st.code, 0, `status exits 0 ${st.code === 0 ? '' : explain(st)}`);
    const v = parseJson<View>(st);
    t.equal(v.state, 'running');
    t.equal(v.supervisor, 'running');
    const gi = v.guest?.interfaces.find((i) => i.hwAddr === net.mac);
    t.ok(gi, `a guest interface has the veth's MAC ${net.mac}: ${JSON.stringify(v.guest?.interfaces.map((i) => [i.name, i.hwAddr]))}`);
    if (!gi) return;
    t.equal(gi.mtu, 1400, 'guest MTU is the veth MTU');
    const addrs = gi.IPAddresses.map((a) => `${a.address}/${a.mask}`);
    t.ok(addrs.includes(net.v4), `guest has ${net.v4}: ${addrs.join(' ')}`);
    t.ok(addrs.includes(net.v6!), `guest has ${net.v6}: ${addrs.join(' ')}`);
    const routes = v.guest!.routes;
    const def4 = routes.find((r) => r.dest === '' && r.family === 0);
    t.equal(def4?.gateway, net.gw4, `IPv4 default route via ${net.gw4}`);
    t.equal(def4?.device, gi.name, 'on that interface');
    const def6 = routes.find((r) => r.dest === '' && r.family === 1);
    t.equal(def6?.gateway, net.gw6, `IPv6 default route via ${net.gw6}`);
    t.ok(
      routes.some((r) => r.dest === '10.77.0.0/24' && r.device === gi.name),
      'the connected IPv4 prefix',
    );
    t.ok(
      v.guest!.mounts.some((m) => m.fstype === 'virtiofs'),
      'the virtio-fs share is mounted in the guest',
    );
  });

  t.test('the permanent neighbour reached the guest', async (t) => {
    const r = await cli(['exec', id, ...C, '--', 'ip', 'neigh', 'show', net.neighbour!.ip]);
    t.equal(r.code, 0, `ip neigh exits 0 ${r.code === 0 ? '' : explain(r)}`);
    t.match(r.stdout, new RegExp(`${net.neighbour!.ip.replace(/\./g, '\\.')} .*lladdr ${net.neighbour!.lladdr}.*PERMANENT`, 'i'), r.stdout);
  });

  t.test('the guest pings the host-side veth through the tap and the tc redirect', async (t) => {
    const r = await cli(['exec', id, ...C, '--', 'ping', '-c', '2', '-W', '5', net.gw4]);
    t.equal(r.code, 0, `ping exits 0 (relayed): ${r.code === 0 ? '' : explain(r)}`);
    t.match(r.stdout, /2 packets transmitted, 2 (packets )?received/, 'both answered');
  });

  t.test('a read-write share: the guest reads a host file and writes one the host sees', async (t) => {
    const s = await cli(['sandbox', 'share', id, '--source', hostDir, '--name', 'rw', ...C, '--json']);
    t.equal(s.code, 0, `share exits 0 ${s.code === 0 ? '' : explain(s)}`);
    const rec = parseJson<{ name: string; guestPath: string; readonly: boolean }>(s);
    t.equal(rec.readonly, false);
    const cat = await cli(['exec', id, ...C, '--', 'cat', `${rec.guestPath}/hello.txt`]);
    t.equal(cat.code, 0, 'cat in the guest exits 0');
    t.equal(cat.stdout, 'hello from the host\n', 'the guest reads the host file');
    const w = await cli(['exec', id, ...C, '--', 'sh', '-c', `echo written by the guest > ${rec.guestPath}/from-guest.txt`]);
    t.equal(w.code, 0, `the guest write exits 0 ${w.code === 0 ? '' : explain(w)}`);
    t.equal(readFileSync(join(hostDir, 'from-guest.txt'), 'utf8'), 'written by the guest\n', 'the host sees the file the guest wrote');
    const un = await cli(['sandbox', 'unshare', id, 'rw', ...C]);
    t.equal(un.code, 0, 'unshare exits 0');
    const gone = await cli(['exec', id, ...C, '--', 'test', '-e', `${rec.guestPath}/hello.txt`]);
    t.not(gone.code, 0, 'after unshare the guest no longer sees the file');
  });

  t.test('a read-only share is not writable from the guest', async (t) => {
    const s = await cli(['sandbox', 'share', id, '--source', hostDir, '--name', 'ro', '--readonly', ...C, '--json']);
    t.equal(s.code, 0, `share --readonly exits 0 ${s.code === 0 ? '' : explain(s)}`);
    const rec = parseJson<{ guestPath: string; readonly: boolean }>(s);
    t.equal(rec.readonly, true);
    const cat = await cli(['exec', id, ...C, '--', 'cat', `${rec.guestPath}/hello.txt`]);
    t.equal(cat.stdout, 'hello from the host\n', 'readable');
    const w = await cli(['exec', id, ...C, '--', 'sh', '-c', `echo nope > ${rec.guestPath}/nope.txt`]);
    t.not(w.code, 0, 'a new file cannot be created');
    t.match(w.stderr, /read-only|permission denied/i, `the guest says why: ${w.stderr.trim()}`);
    const o = await cli(['exec', id, ...C, '--', 'sh', '-c', `echo overwritten > ${rec.guestPath}/hello.txt`]);
    t.not(o.code, 0, 'an existing file cannot be overwritten');
    t.notOk(existsSync(join(hostDir, 'nope.txt')), 'nothing appeared on the host');
    t.equal(readFileSync(join(hostDir, 'hello.txt'), 'utf8'), 'hello from the host\n', 'the host file is unchanged');
  });

  t.test('exec relays a non-zero exit code and stderr', async (t) => {
    const r = await cli(['exec', id, ...C, '--', 'sh', '-c', 'echo out; echo to-stderr >&2; exit 7']);
    t.equal(r.code, 7, 'exit code 7 relayed');
    t.equal(r.stdout, 'out\n', 'stdout relayed');
    t.match(r.stderr, /to-stderr/, 'stderr relayed');
    const missing = await cli(['exec', id, ...C, '--', '/no/such/binary']);
    t.not(missing.code, 0, `a missing binary is a failure (exit ${missing.code})`);
  });

  t.test('list shows it', async (t) => {
    const r = await cli(['sandbox', 'list', ...C, '--json']);
    t.equal(r.code, 0);
    const l = parseJson<View[]>(r);
    const me = l.find((x) => x.id === id);
    t.ok(me, 'listed');
    t.equal(me?.state, 'running');
    t.equal(me?.supervisor, 'running');
  });

  t.test('down removes everything; a second down is harmless', async (t) => {
    const d = await cli(['sandbox', 'down', id, ...C, '--json']);
    t.equal(d.code, 0, `down exits 0 ${d.code === 0 ? '' : explain(d)}`);
    const dj = parseJson<{ state: string; via: string }>(d);
    t.equal(dj.state, 'removed');
    t.equal(dj.via, 'supervisor', 'through the live supervisor');
    t.same(
      await residue(rt, { id, pids, pod: { ns: net.pod, dev: net.ifname } }),
      [],
      'no process, mount, socket, state, tap or qdisc left',
    );
    t.ok(existsSync(net.pod.path), 'the caller-owned namespace is kept');
    const link = JSON.parse((await run('ip', ['-n', net.pod.name!, '-j', 'link', 'show', net.ifname])).stdout) as {
      address: string;
      mtu: number;
    }[];
    t.equal(link[0]?.address, net.mac, 'the veth keeps its MAC');
    t.equal(link[0]?.mtu, 1400, 'and its MTU');
    const again = await cli(['sandbox', 'down', id, ...C, '--json']);
    t.equal(again.code, 0, 'a second down exits 0');
    t.equal(parseJson<{ state: string }>(again).state, 'absent', 'and says absent');
    const st = await cli(['sandbox', 'status', id, ...C, '--json']);
    t.equal(st.code, 1, 'status of a removed sandbox fails');
    t.match(st.stdout, /E_SANDBOX_NOT_FOUND/, 'with E_SANDBOX_NOT_FOUND');
  });
});
