/**
 * The agent's long-lived `ip -batch` coprocess (guest/agent/ip-coprocess.ts), run on the host against
 * a namespace we create: per-line outcomes with and without force, JSON reads, and recovery when the
 * process dies (killed, or exiting on a malformed argument as iproute2 does) or stops answering.
 */
import t from 'tap';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { NOT_RUN } from '../../../guest/agent/ip.js';
import { makeCoprocessIp, type CoprocessIp } from '../../../guest/agent/ip-coprocess.js';
import { tempNetns } from '../../helpers/netns.js';

interface Link {
  ifname: string;
  addr_info?: { local: string; prefixlen: number }[];
  linkinfo?: { info_kind?: string };
}

async function setup(t: { teardown(fn: () => unknown): void }): Promise<{ ns: string; ip: CoprocessIp }> {
  const ns = (await tempNetns(t, 'gcop')).name!;
  await run('ip', ['-n', ns, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1']);
  const ip = makeCoprocessIp({ prefix: ['-n', ns], label: `netns ${ns}` });
  t.teardown(() => ip.close());
  return { ns, ip };
}

async function addrs(ns: string, dev: string): Promise<string[]> {
  const out = JSON.parse((await run('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', dev])).stdout) as Link[];
  return (out[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`).sort();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('with force every line runs and each failure is reported against its line', async (t) => {
  const { ns, ip } = await setup(t);
  const outcome = await ip.batch(
    ['addr add 10.61.0.2/24 dev v0', 'link set dev missing0 up', 'addr add 10.62.0.2/24 dev v0', 'route add 10.63.0.0/16 via 10.200.0.1'],
    { force: true },
  );
  t.equal(outcome[0], null, 'first line succeeded');
  t.match(outcome[1], /missing0|Cannot find device|does not exist/, 'second line failed with the kernel message');
  t.equal(outcome[2], null, 'the line after a failure still ran');
  t.match(outcome[3], /unreachable|Nexthop|gateway/i, 'each failure keeps its own message');
  t.same(await addrs(ns, 'v0'), ['10.61.0.2/24', '10.62.0.2/24']);
  t.same(
    await ip.batch(['addr add 10.64.0.2/24 dev v0', 'addr add 10.65.0.2/24 dev v0'], { force: true }),
    [null, null],
    'a later request is matched to its own lines',
  );
  const pid = ip.pid;
  t.ok(pid, 'a process is running');
  t.same(await ip.batch(['addr add 10.66.0.2/24 dev v0'], { force: true }), [null]);
  t.equal(ip.pid, pid, 'requests that succeed are served by the same process');
});

t.test('without force the first failure stops the batch: later lines are not run', async (t) => {
  const { ns, ip } = await setup(t);
  const outcome = await ip.batch(['addr add 10.71.0.2/24 dev v0', 'addr add 10.71.0.3/24 dev missing0', 'addr add 10.72.0.2/24 dev v0']);
  t.equal(outcome[0], null);
  t.match(outcome[1], /missing0|Cannot find device|does not exist/);
  t.equal(outcome[2], NOT_RUN, 'the line after the failure is reported as not run');
  t.same(await addrs(ns, 'v0'), ['10.71.0.2/24'], 'and did not run');
});

t.test('reads return what a spawned ip prints; a failed read is an error and the process goes on', async (t) => {
  const { ns, ip } = await setup(t);
  await ip.batch(['addr add 10.81.0.2/24 dev v0', 'link set v0 up', 'link set v1 up', 'route add 10.82.0.0/16 dev v0'], { force: true });
  const viaCoprocess = await ip.json<Link[]>(['-details', 'addr', 'show']);
  const viaSpawn = JSON.parse((await run('ip', ['-n', ns, '-details', '-json', 'addr', 'show'])).stdout) as Link[];
  t.same(
    viaCoprocess.map((l) => l.ifname),
    viaSpawn.map((l) => l.ifname),
    'same links in the same order',
  );
  t.equal(viaCoprocess.find((l) => l.ifname === 'v0')?.linkinfo?.info_kind, 'veth', '-details is in effect (linkinfo printed)');
  const v4 = (l: Link | undefined): string[] | undefined => l?.addr_info?.filter((a) => !a.local.includes(':')).map((a) => a.local);
  t.same(v4(viaCoprocess.find((l) => l.ifname === 'v0')), ['10.81.0.2']);

  await t.rejects(
    ip.json(['addr', 'show', 'dev', 'missing0']),
    { code: 'E_NETLINK', message: /missing0/ },
    'a read that fails names the command',
  );
  const routes = await ip.json<{ dst: string }[]>(['route', 'show', 'table', 'main']);
  t.ok(
    routes.some((r) => r.dst === '10.82.0.0/16'),
    'a read after a failed one gets its own output',
  );
  const pid = ip.pid;

  const only4 = await ip.json<{ dst: string }[]>(['-4', 'route', 'show']);
  t.ok(
    only4.some((r) => r.dst === '10.82.0.0/16'),
    'a read with another global option (-4) still works (spawned)',
  );

  // Calls made together are answered in order, each with its own result.
  const [a, b, c, d] = await Promise.all([
    ip.json<Link[]>(['addr', 'show', 'dev', 'v0']),
    ip.batch(['addr add 10.83.0.2/24 dev v1'], { force: true }),
    ip.json<{ dst: string }[]>(['route', 'show', 'table', 'main']),
    ip.json<Link[]>(['addr', 'show', 'dev', 'v1']),
  ]);
  t.equal(a[0]?.ifname, 'v0');
  t.same(b, [null]);
  t.ok(
    c.some((r) => r.dst === '10.83.0.0/24'),
    'a route read between them gets route JSON, with the new prefix route',
  );
  t.same(v4(d[0]), ['10.83.0.2'], 'the read queued after the write sees it');
  // ip keeps state between batch lines: `link show` would hide addresses from every later `addr show`
  // of the same process (so it is spawned), and the sentinel after each request must not do that either.
  await ip.json(['link', 'show', 'dev', 'v0']);
  await ip.batch(['link set dev v1 up', 'link set dev v0 up']);
  t.same(
    v4((await ip.json<Link[]>(['addr', 'show', 'dev', 'v1']))[0]),
    ['10.83.0.2'],
    'addresses still reported after link reads and several requests',
  );
  t.equal(ip.pid, pid, 'all of it by the same process');
});

t.test('a killed process is replaced by a new one on the next call', async (t) => {
  const { ns, ip } = await setup(t);
  ip.start();
  const pid = ip.pid!;
  t.ok(pid && alive(pid), 'start() spawns the process before any call');
  process.kill(pid, 'SIGKILL');
  await until('the killed ip to be gone', () => !alive(pid) && ip.pid === undefined);
  const links = await ip.json<Link[]>(['addr', 'show']);
  t.ok(
    links.some((l) => l.ifname === 'v0'),
    'the next read is answered',
  );
  t.ok(ip.pid && ip.pid !== pid, 'by a new process');
  t.same(await ip.batch(['addr add 10.91.0.2/24 dev v0'], { force: true }), [null], 'writes work again');
  t.same(await addrs(ns, 'v0'), ['10.91.0.2/24']);
});

t.test('after start(), a process ended by a failed line is replaced before the next call', async (t) => {
  const { ns, ip } = await setup(t);
  ip.start();
  const first = ip.pid;
  t.ok(first, 'start() spawns the process before any call');
  const outcome = await ip.batch(['link set dev missing0 up', 'addr add 10.95.0.2/24 dev v0']);
  t.match(outcome[0], /missing0|Cannot find device|does not exist/);
  t.equal(outcome[1], NOT_RUN);
  t.ok(ip.pid && ip.pid !== first, 'a new process is already running when the call returns');
  t.same(await addrs(ns, 'v0'), [], 'the line after the failure did not run');
});

t.test('a line that makes ip exit fails with its message; the next call gets a new process', async (t) => {
  const { ns, ip } = await setup(t);
  await ip.batch(['link set v0 up'], { force: true });
  const pid = ip.pid;
  // iproute2 exits (rather than failing the line) on a malformed prefix.
  await t.rejects(ip.batch(['addr replace 10.1.2.3/99 dev v0'], { force: true }), { code: 'E_NETLINK', message: /10\.1\.2\.3\/99/ });
  t.same(await ip.batch(['addr add 10.92.0.2/24 dev v0']), [null], 'the next batch runs');
  t.not(ip.pid, pid, 'on a new process');
  t.same(await addrs(ns, 'v0'), ['10.92.0.2/24']);
  await t.rejects(ip.batch(['link set v0 up \\']), { code: 'E_INVALID_ARGUMENT' }, 'a trailing backslash (line continuation) is refused');
  await t.rejects(ip.json(['addr', 'show\n']), { code: 'E_INVALID_ARGUMENT' }, 'so is a line break');
});

t.test('a process that stops answering is killed at the timeout and replaced', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'krt-gcop-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const mute = join(dir, 'mute-ip');
  await writeFile(mute, '#!/bin/sh\nexec cat >/dev/null\n');
  await chmod(mute, 0o755);
  const ip = makeCoprocessIp({ file: mute, timeoutMs: 300 });
  t.teardown(() => ip.close());
  await t.rejects(ip.batch(['link set lo up'], { force: true }), { code: 'E_NETLINK', message: /timed out/ });
  t.equal(ip.pid, undefined, 'the silent process was killed');
  await t.rejects(
    ip.json(['addr', 'show']),
    { code: 'E_NETLINK', message: /timed out/ },
    'the next call starts another (which times out too)',
  );
});
