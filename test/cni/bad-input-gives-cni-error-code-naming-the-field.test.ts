import { join } from 'node:path';
import t from 'tap';
import { run } from '../../host/exec.js';
import { tempNetns, vethPair } from '../helpers/netns.js';
import { filesUnder, installKataCni, invoke, tempDir, type RuntimeOptions } from './helpers/cni-runtime.js';
import { ingressDevs, namesIn } from './helpers/inspect.js';

/**
 * Bad input gets the right CNI error code, a message naming the field or variable, the error JSON
 * as the only stdout line, exit status 1, and leaves nothing behind (no tap, no qdisc, no record).
 */
const bin = await installKataCni(t);
const KATA = join(bin, 'kata-cni');
const host = await tempNetns(t, 'badh');
const pod = await tempNetns(t, 'badp');
const { peer } = await vethPair(pod, host, { mtu: 1500 });
const stateDir = tempDir(t, 'bads');
const opts: RuntimeOptions = { hostNs: host, path: [bin] };

const prev = {
  cniVersion: '1.0.0',
  interfaces: [{ name: peer }, { name: 'eth0', sandbox: pod.path }, { name: 'eth1', sandbox: pod.path }],
  ips: [{ address: '10.77.0.2/24', interface: 1 }],
};
const good = { cniVersion: '1.0.0', name: 'krt-bad', type: 'kata-cni', stateDir, prevResult: prev };
const env = { containerId: 'krtbad', netns: pod.path, ifname: 'eth0' };

interface Case {
  name: string;
  stdin: string;
  env?: Partial<typeof env> & { args?: string };
  command?: string;
  code: number;
  msg: RegExp;
  setup?: () => Promise<void>;
  cleanup?: (t: { ok(v: unknown, m: string): void }) => Promise<void>;
}

const cfg = (over: Record<string, unknown>): string => JSON.stringify({ ...good, ...over });

const CASES: Case[] = [
  { name: 'malformed JSON', stdin: '{"cniVersion": "1.0.0", "name": ', code: 6, msg: /cannot decode the network configuration on stdin/ },
  { name: 'empty stdin', stdin: '', code: 6, msg: /cannot decode/ },
  { name: 'a JSON array', stdin: '[]', code: 6, msg: /must be a JSON object \(got an array\)/ },
  { name: 'unsupported cniVersion', stdin: cfg({ cniVersion: '0.2.0' }), code: 1, msg: /incompatible CNI versions/ },
  { name: 'cniVersion of the wrong type', stdin: cfg({ cniVersion: 1 }), code: 7, msg: /field "cniVersion" must be a string/ },
  { name: 'missing name', stdin: cfg({ name: undefined }), code: 7, msg: /field "name" is required/ },
  { name: 'queues as a string', stdin: cfg({ queues: '2' }), code: 7, msg: /field "queues" must be integer \(got "2"\)/ },
  { name: 'queues out of range', stdin: cfg({ queues: 0 }), code: 7, msg: /field "queues" must be >= 1/ },
  { name: 'owner negative', stdin: cfg({ owner: -1 }), code: 7, msg: /field "owner" must be >= 0/ },
  { name: 'vhostNet not a boolean', stdin: cfg({ vhostNet: 'yes' }), code: 7, msg: /field "vhostNet" must be boolean/ },
  { name: 'tapName of the wrong type', stdin: cfg({ tapName: 5 }), code: 7, msg: /field "tapName" must be string/ },
  { name: 'tapName with a bad character', stdin: cfg({ tapName: 'tap/{index}' }), code: 7, msg: /field "tapName" must match pattern/ },
  {
    name: 'tapName expanding past 15 bytes',
    stdin: cfg({ tapName: 'vm-{ifname}-kata-tap' }),
    code: 7,
    msg: /field "tapName": template "vm-\{ifname\}-kata-tap" gives "vm-eth0-kata-tap" for CNI_IFNAME eth0, 16 bytes; .*at most 15/,
  },
  {
    name: 'tapName expanding to CNI_IFNAME',
    stdin: cfg({ tapName: '{ifname}' }),
    code: 7,
    msg: /field "tapName".*the name of CNI_IFNAME itself/,
  },
  {
    name: 'prevResult of the wrong shape',
    stdin: cfg({ prevResult: { interfaces: [{ name: 7 }] } }),
    code: 7,
    msg: /field "prevResult\.interfaces\[0\]\.name" must be string/,
  },
  {
    name: 'args.cni override of the wrong type',
    stdin: cfg({ args: { cni: { owner: 'root' } } }),
    code: 7,
    msg: /field "args\.cni\.owner" must be integer/,
  },
  {
    name: 'unknown model',
    stdin: cfg({ model: 'bridge' }),
    code: 2,
    msg: /unsupported value "bridge" for field "model" \(supported: tcfilter, macvtap\)/,
  },
  {
    name: 'missing prevResult',
    stdin: cfg({ prevResult: undefined }),
    code: 7,
    msg: /field "prevResult" is missing: kata-cni is a chained plugin/,
  },
  {
    name: 'ifname not in prevResult',
    stdin: cfg({}),
    env: { ifname: 'net1' },
    code: 7,
    msg: /prevResult\.interfaces has no interface "net1" \(CNI_IFNAME\)/,
  },
  {
    name: 'ifname in prevResult but in another sandbox',
    stdin: cfg({ prevResult: { ...prev, interfaces: [{ name: 'eth0', sandbox: '/run/netns/somewhere-else' }] } }),
    code: 7,
    msg: /no interface "eth0" \(CNI_IFNAME\) with sandbox/,
  },
  {
    name: 'absent netns',
    stdin: cfg({ prevResult: { ...prev, interfaces: [{ name: 'eth0', sandbox: '/run/netns/krt-absent-netns' }] } }),
    env: { netns: '/run/netns/krt-absent-netns' },
    code: 4,
    msg: /CNI_NETNS "\/run\/netns\/krt-absent-netns" does not exist/,
  },
  {
    name: 'relative netns path',
    stdin: cfg({}),
    env: { netns: 'run/netns/x' },
    code: 4,
    msg: /CNI_NETNS "run\/netns\/x" must be an absolute path/,
  },
  {
    name: 'ifname over 15 bytes',
    stdin: cfg({}),
    env: { ifname: 'eth0-much-too-long' },
    code: 4,
    msg: /CNI_IFNAME "eth0-much-too-long" is 18 bytes long; Linux interface names have at most 15/,
  },
  { name: 'ifname with a slash', stdin: cfg({}), env: { ifname: 'a/b' }, code: 4, msg: /CNI_IFNAME "a\/b" is not a usable interface name/ },
  {
    name: 'missing CNI_CONTAINERID',
    stdin: cfg({}),
    env: { containerId: '' },
    code: 4,
    msg: /required environment variables missing: CNI_CONTAINERID/,
  },
  { name: 'bad CNI_CONTAINERID', stdin: cfg({}), env: { containerId: '-x' }, code: 4, msg: /CNI_CONTAINERID "-x" is not valid/ },
  {
    name: 'missing CNI_NETNS on ADD',
    stdin: cfg({}),
    env: { netns: '' },
    code: 4,
    msg: /required environment variables missing: CNI_NETNS/,
  },
  {
    name: 'unknown CNI_COMMAND',
    stdin: cfg({}),
    command: 'FROB',
    code: 4,
    msg: /CNI_COMMAND "FROB" is not one of ADD, DEL, CHECK, GC, STATUS, VERSION/,
  },
  {
    name: 'malformed CNI_ARGS',
    stdin: cfg({}),
    env: { args: 'novalue' },
    code: 4,
    msg: /CNI_ARGS: "novalue" is not of the form KEY=VALUE/,
  },
  {
    name: 'interface listed in prevResult but absent from the netns',
    stdin: cfg({}),
    env: { ifname: 'eth1' },
    code: 107,
    msg: /link eth1 does not exist in network namespace/,
  },
  {
    name: 'tap name already taken (a foreign link, left untouched)',
    stdin: cfg({}),
    code: 108,
    msg: /the tap name "tap0_kata" is already taken in CNI_NETNS/,
    setup: async () => {
      await run('ip', ['-n', pod.name!, 'link', 'add', 'tap0_kata', 'type', 'veth', 'peer', 'name', 'krtpeer']);
    },
    cleanup: async (t) => {
      t.ok((await namesIn(pod)).includes('tap0_kata'), 'the foreign tap0_kata is still there');
      await run('ip', ['-n', pod.name!, 'link', 'del', 'tap0_kata']);
    },
  },
];

for (const c of CASES) {
  t.test(`${c.name}: code ${c.code}`, async (t) => {
    await c.setup?.();
    const r = await invoke(KATA, c.command ?? 'ADD', { ...env, ...c.env }, c.stdin, opts);
    t.equal(r.exitCode, 1, 'exit status 1');
    t.equal(r.stdout.trim().split('\n').length, 1, 'one line on stdout');
    t.ok(r.json, 'stdout is JSON');
    t.equal(r.json?.code, c.code, `code ${c.code}: ${r.stdout}`);
    t.match(r.json?.msg, c.msg, 'the message names what is wrong');
    t.type(r.json?.cniVersion, 'string', 'the error carries cniVersion');
    t.equal(r.stderr, '', 'nothing on stderr');
    await c.cleanup?.(t);
    t.same(await namesIn(pod), ['eth0', 'lo'], 'no link left in the pod namespace');
    t.same(await ingressDevs(pod), [], 'no qdisc left');
    t.same(filesUnder(stateDir), [], 'no attachment record left');
  });
}

t.test('a good ADD in the same namespace still works afterwards (the cases above really were refusals)', async (t) => {
  const r = await invoke(KATA, 'ADD', env, cfg({}), opts);
  t.equal(r.exitCode, 0, r.stdout);
  const d = await invoke(KATA, 'DEL', env, cfg({}), opts);
  t.equal(d.exitCode, 0, d.stdout);
  t.same(await namesIn(pod), ['eth0', 'lo']);
  t.same(filesUnder(stateDir), []);
});
