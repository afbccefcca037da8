import { join } from 'node:path';
import t, { type Test } from 'tap';
import { tempNetns, vethPair } from '../helpers/netns.js';
import { filesUnder, installKataCni, invoke, tempDir, type Invocation, type RuntimeOptions } from './helpers/cni-runtime.js';
import { ingressDevs, namesIn } from './helpers/inspect.js';

/**
 * Interop with what runtimes really send (ecosystem findings, section 4):
 *  - GC with `cni.dev/valid-attachments: null`: libcni passes its list as is and a Go nil slice is
 *    null (CRI-O for a network without live pods): none is valid. libcni sends both keys.
 *  - GC without either key (libcni given no GCArgs, as cnitool gc): nothing removed, code 7.
 *  - DEL with a CNI_ARGS key kata-cni does not know (or a malformed pair) still cleans up and
 *    succeeds: a failing DEL would stop the rest of the chain's DEL; ADD still refuses it.
 *  - an error's `details` carries only what its `msg` does not say (libcni prints both).
 */
const bin = await installKataCni(t);
const KATA = join(bin, 'kata-cni');
const host = await tempNetns(t, 'ioh');

async function attached(tt: Test, containerId: string, stateDir: string) {
  const pod = await tempNetns(tt, 'iop');
  await vethPair(pod, host, { peer: `vio${containerId.slice(-4)}` });
  const opts: RuntimeOptions = { hostNs: host, path: [bin] };
  const conf = (extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ cniVersion: '1.1.0', name: 'krt-io', type: 'kata-cni', stateDir, ...extra });
  const att = { containerId, netns: pod.path, ifname: 'eth0' };
  const add = await invoke(
    KATA,
    'ADD',
    att,
    conf({ prevResult: { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', sandbox: pod.path }] } }),
    opts,
  );
  if (add.exitCode !== 0) throw new Error(add.stdout);
  return { pod, opts, conf, att };
}

for (const [label, keys] of [
  ['both keys null (as libcni sends them)', { 'cni.dev/valid-attachments': null, 'cni.dev/attachments': null }],
  ['cni.dev/valid-attachments null alone', { 'cni.dev/valid-attachments': null }],
  ['the older cni.dev/attachments null alone', { 'cni.dev/attachments': null }],
] as const) {
  t.test(`GC with ${label}: none is valid, the stale attachment goes`, async (t) => {
    const stateDir = tempDir(t, 'ios');
    const a = await attached(t, 'krtgcnull', stateDir);
    t.same(await namesIn(a.pod), ['eth0', 'lo', 'tap0_kata']);
    const gc = await invoke(KATA, 'GC', {}, a.conf(keys), a.opts);
    t.equal(gc.exitCode, 0, gc.stdout);
    t.same(await namesIn(a.pod), ['eth0', 'lo'], 'tap removed');
    t.same(await ingressDevs(a.pod), [], 'qdiscs removed');
    t.same(filesUnder(stateDir), [], 'record removed');
  });
}

t.test('GC without either key removes nothing and says what is missing (code 7)', async (t) => {
  const stateDir = tempDir(t, 'ios');
  const a = await attached(t, 'krtgcnokey', stateDir);
  const gc = await invoke(KATA, 'GC', {}, a.conf(), a.opts);
  t.equal(gc.json?.code, 7, gc.stdout);
  t.match(gc.json?.msg, /cni\.dev\/valid-attachments" is missing/);
  t.same(await namesIn(a.pod), ['eth0', 'lo', 'tap0_kata'], 'nothing removed');
  await invoke(KATA, 'DEL', a.att, a.conf(), a.opts);
});

for (const args of ['FOO_UNKNOWN=1', 'K8S_POD_NAME=p;SOME_RUNTIME_KEY=x', 'novalue;KATA_TAP_QUEUES=abc']) {
  t.test(`DEL with CNI_ARGS "${args}" cleans up and succeeds; ADD refuses it`, async (t) => {
    const stateDir = tempDir(t, 'ios');
    const a = await attached(t, 'krtdelargs', stateDir);
    const del = await invoke(KATA, 'DEL', { ...a.att, args }, a.conf(), a.opts);
    t.equal(del.exitCode, 0, del.stdout);
    t.equal(del.stdout, '', 'nothing printed');
    t.same(await namesIn(a.pod), ['eth0', 'lo'], 'tap removed');
    t.same(filesUnder(stateDir), [], 'record removed');
    const add = await invoke(
      KATA,
      'ADD',
      { ...a.att, args },
      a.conf({ prevResult: { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', sandbox: a.pod.path }] } }),
      a.opts,
    );
    t.equal(add.json?.code, 4, `ADD: code 4 ${add.stdout}`);
    t.same(await namesIn(a.pod), ['eth0', 'lo'], 'ADD left nothing');
  });
}

/** No line of details repeats what msg says. */
function detailsAddToMsg(tt: Test, r: Invocation, what: string): void {
  const details = r.json?.details;
  if (details === undefined) {
    tt.ok(true, `${what}: no details (msg says it all)`);
    return;
  }
  const msg = String(r.json?.msg);
  for (const line of String(details).split('\n')) tt.ok(!msg.includes(line.trim()), `${what}: details line not in msg: ${line}`);
}

t.test('details carry what msg does not', async (t) => {
  const stateDir = tempDir(t, 'ios');
  const a = await attached(t, 'krtdetails', stateDir);
  // Two schema problems: msg names the first, details the other.
  const bad = await invoke(KATA, 'ADD', a.att, a.conf({ queues: 'x', owner: -2 }), a.opts);
  t.equal(bad.json?.code, 7);
  t.match(bad.json?.msg, /queues/);
  t.match(bad.json?.details, /owner/, 'the second problem is in details');
  t.notMatch(bad.json?.details, /queues/, 'the first is not repeated');
  detailsAddToMsg(t, bad, 'schema');
  // CHECK that finds problems: msg lists them all, so details add nothing.
  const check = await invoke(KATA, 'CHECK', a.att, a.conf({ prevResult: { cniVersion: '1.1.0', interfaces: [] } }), a.opts);
  t.equal(check.json?.code, 120, check.stdout);
  detailsAddToMsg(t, check, 'CHECK');
  // A suite error: details carry its E_ code, which msg does not.
  const missing = await invoke(
    KATA,
    'ADD',
    { ...a.att, ifname: 'eth9' },
    a.conf({ prevResult: { cniVersion: '1.1.0', interfaces: [{ name: 'eth9', sandbox: a.pod.path }] } }),
    a.opts,
  );
  t.equal(missing.json?.code, 107, missing.stdout);
  t.equal(missing.json?.details, 'E_LINK_NOT_FOUND');
  detailsAddToMsg(t, missing, 'link not found');
  // ifname not in prevResult: details list what prevResult has.
  const absent = await invoke(
    KATA,
    'ADD',
    { ...a.att, ifname: 'eth3' },
    a.conf({ prevResult: { cniVersion: '1.1.0', interfaces: [] } }),
    a.opts,
  );
  t.equal(absent.json?.code, 7);
  t.equal(absent.json?.details, 'interfaces in prevResult: none');
  detailsAddToMsg(t, absent, 'prevResult');
  await invoke(KATA, 'DEL', a.att, a.conf(), a.opts);
});
