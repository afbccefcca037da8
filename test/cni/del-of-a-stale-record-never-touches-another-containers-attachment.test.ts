import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { run } from '../../host/exec.js';
import type { NetnsRef } from '../../host/netns.js';
import { tempNetns, vethPair } from '../helpers/netns.js';
import { filesUnder, installKataCni, invoke, tempDir, type Invocation, type RuntimeOptions } from './helpers/cni-runtime.js';
import { redirectState } from './helpers/inspect.js';

/**
 * redteam D5: container A was attached in a namespace that is gone; a new namespace now sits at the
 * same path (or even has the same inode: the kernel reuses namespace inodes) and container B is
 * attached there with the same tap name. Nothing A's DEL, GC or CHECK does may touch B's tap,
 * qdiscs or redirects; A's record is simply forgotten. The last case shows DEL does remove an
 * attachment that is provably its own, so the others are real refusals.
 */
const bin = await installKataCni(t);
const KATA = join(bin, 'kata-cni');
const NETWORK = 'krt-d5';

interface Tenants {
  pod: NetnsRef;
  stateDir: string;
  opts: RuntimeOptions;
  conf: (extra?: Record<string, unknown>) => string;
  prev: () => Record<string, unknown>;
  resultB: Record<string, unknown>;
  recordA: string;
  recordB: string;
}

/** A is ADDed in pod; pod is deleted and made again at the same path with a new eth0; B is ADDed there. */
async function tenants(tt: Test, bTapName?: string): Promise<Tenants> {
  const host = await tempNetns(tt, 'd5h');
  const pod = await tempNetns(tt, 'd5p');
  const stateDir = tempDir(tt, 'd5s');
  const opts: RuntimeOptions = { hostNs: host, path: [bin] };
  const prev = (): Record<string, unknown> => ({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: pod.path }] });
  const conf = (extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ cniVersion: '1.0.0', name: NETWORK, type: 'kata-cni', stateDir, ...extra });
  await vethPair(pod, host);
  const a = await invoke(KATA, 'ADD', { containerId: 'krtd5a', netns: pod.path, ifname: 'eth0' }, conf({ prevResult: prev() }), opts);
  if (a.exitCode !== 0) throw new Error(`ADD A: ${a.stdout}`);
  await run('ip', ['netns', 'del', pod.name!]);
  await run('ip', ['netns', 'add', pod.name!]);
  await vethPair(pod, host, { peer: `vb${Date.now() % 1e9}` });
  const b = await invoke(
    KATA,
    'ADD',
    { containerId: 'krtd5b', netns: pod.path, ifname: 'eth0' },
    conf({ prevResult: prev(), ...(bTapName ? { tapName: bTapName } : {}) }),
    opts,
  );
  if (b.exitCode !== 0 || !b.json) throw new Error(`ADD B: ${b.stdout}`);
  return {
    pod,
    stateDir,
    opts,
    conf,
    prev,
    resultB: b.json,
    recordA: join(stateDir, NETWORK, 'krtd5a@eth0.json'),
    recordB: join(stateDir, NETWORK, 'krtd5b@eth0.json'),
  };
}

function kata(x: Tenants, command: string, containerId: string, stdin: string, netns = x.pod.path): Promise<Invocation> {
  return invoke(KATA, command, { containerId, netns, ifname: 'eth0' }, stdin, x.opts);
}

/** B's attachment is complete and healthy: the same kernel state as right after its ADD, and CHECK passes. */
async function bIsWhole(tt: Test, x: Tenants, before: Awaited<ReturnType<typeof redirectState>>, tap = 'tap0_kata'): Promise<void> {
  tt.same(await redirectState(x.pod, 'eth0', tap), before, "B's tap, both ingress qdiscs and both redirects are untouched");
  const check = await kata(x, 'CHECK', 'krtd5b', x.conf({ prevResult: x.resultB, ...(tap === 'tap0_kata' ? {} : { tapName: tap }) }));
  tt.equal(check.exitCode, 0, `CHECK of B still passes ${check.stdout}`);
  tt.ok(filesUnder(x.stateDir).includes(`${NETWORK}/krtd5b@eth0.json`), "B's record is kept");
}

t.test('DEL of A with CNI_NETNS at the reused path removes only A’s record', async (t) => {
  const x = await tenants(t);
  const before = await redirectState(x.pod, 'eth0', 'tap0_kata');
  t.same(before.redirects, ['eth0>tap0_kata', 'tap0_kata>eth0'], 'B is attached');
  const del = await kata(x, 'DEL', 'krtd5a', x.conf({ prevResult: x.prev() }));
  t.equal(del.exitCode, 0, del.stdout);
  await bIsWhole(t, x, before);
  t.same(filesUnder(x.stateDir), [`${NETWORK}/krtd5b@eth0.json`], "A's record is gone");
});

t.test('DEL of A with an empty CNI_NETNS (as ctr sends) touches nothing either', async (t) => {
  const x = await tenants(t);
  const before = await redirectState(x.pod, 'eth0', 'tap0_kata');
  const del = await kata(x, 'DEL', 'krtd5a', x.conf(), '');
  t.equal(del.exitCode, 0, del.stdout);
  await bIsWhole(t, x, before);
  t.same(filesUnder(x.stateDir), [`${NETWORK}/krtd5b@eth0.json`]);
});

t.test('DEL of A without any record does not rebuild what B’s record claims', async (t) => {
  const x = await tenants(t);
  rmSync(x.recordA);
  const before = await redirectState(x.pod, 'eth0', 'tap0_kata');
  const del = await kata(x, 'DEL', 'krtd5a', x.conf({ prevResult: x.prev() }));
  t.equal(del.exitCode, 0, del.stdout);
  await bIsWhole(t, x, before);
});

t.test('A’s record pointing at B’s namespace inode (a reused inode) is refuted by the tap’s MAC', async (t) => {
  const x = await tenants(t);
  const rec = JSON.parse(readFileSync(x.recordA, 'utf8')) as { netnsId: { dev: number; ino: number } };
  const st = statSync(x.pod.path);
  rec.netnsId = { dev: st.dev, ino: st.ino };
  writeFileSync(x.recordA, JSON.stringify(rec));
  const before = await redirectState(x.pod, 'eth0', 'tap0_kata');
  const del = await kata(x, 'DEL', 'krtd5a', x.conf({ prevResult: x.prev() }));
  t.equal(del.exitCode, 0, del.stdout);
  await bIsWhole(t, x, before);
  t.same(filesUnder(x.stateDir), [`${NETWORK}/krtd5b@eth0.json`]);
});

t.test('the same with B’s tap under another name: the interface is not the one A attached, its qdisc stays', async (t) => {
  const x = await tenants(t, '{ifname}_b');
  const rec = JSON.parse(readFileSync(x.recordA, 'utf8')) as { netnsId: { dev: number; ino: number } };
  const st = statSync(x.pod.path);
  rec.netnsId = { dev: st.dev, ino: st.ino };
  writeFileSync(x.recordA, JSON.stringify(rec));
  const before = await redirectState(x.pod, 'eth0', 'eth0_b');
  t.same(before.ingress, ['eth0', 'eth0_b']);
  const del = await kata(x, 'DEL', 'krtd5a', x.conf({ prevResult: x.prev() }));
  t.equal(del.exitCode, 0, del.stdout);
  await bIsWhole(t, x, before, 'eth0_b');
});

t.test('GC keeping only B forgets A’s stale record and leaves B whole', async (t) => {
  const x = await tenants(t);
  const before = await redirectState(x.pod, 'eth0', 'tap0_kata');
  const gc = await invoke(
    KATA,
    'GC',
    {},
    JSON.stringify({
      cniVersion: '1.1.0',
      name: NETWORK,
      type: 'kata-cni',
      stateDir: x.stateDir,
      'cni.dev/valid-attachments': [{ containerID: 'krtd5b', ifname: 'eth0' }],
    }),
    x.opts,
  );
  t.equal(gc.exitCode, 0, gc.stdout);
  await bIsWhole(t, x, before);
  t.same(filesUnder(x.stateDir), [`${NETWORK}/krtd5b@eth0.json`]);
});

t.test('CHECK of A reports the other namespace and changes nothing', async (t) => {
  const x = await tenants(t);
  const before = await redirectState(x.pod, 'eth0', 'tap0_kata');
  const check = await kata(x, 'CHECK', 'krtd5a', x.conf({ prevResult: x.prev() }));
  t.equal(check.json?.code, 120, check.stdout);
  t.match(check.json?.msg, /made in another network namespace/);
  await bIsWhole(t, x, before);
});

t.test('control: DEL of B, whose attachment it is, removes it', async (t) => {
  const x = await tenants(t);
  const del = await kata(x, 'DEL', 'krtd5b', x.conf({ prevResult: x.resultB }));
  t.equal(del.exitCode, 0, del.stdout);
  const after = await redirectState(x.pod, 'eth0', 'tap0_kata');
  t.same({ tap: after.tap, ingress: after.ingress, redirects: after.redirects }, { tap: undefined, ingress: [], redirects: [] });
  t.same(filesUnder(x.stateDir), [`${NETWORK}/krtd5a@eth0.json`], "only A's stale record is left (for its own DEL or GC)");
});
