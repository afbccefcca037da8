/**
 * The CLI without a VM boot: --help of every command, usage errors (exit 2), commands on a sandbox
 * that does not exist (down is harmless, status/exec fail with E_SANDBOX_NOT_FOUND), an invalid id,
 * an empty list, --version, and `check --json` (KVM probed, kernel features tried in a namespace).
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { cli, parseJson, tempRuntime } from '../../helpers/sandbox.js';

const COMMANDS: [string[], RegExp][] = [
  [['sandbox', 'up'], /kata-resources sandbox up \[--id ID\] \[--netns NAME\|PATH\] \[--config FILE\] \[--json\]/],
  [['sandbox', 'status'], /kata-resources sandbox status ID/],
  [['sandbox', 'down'], /kata-resources sandbox down ID/],
  [['sandbox', 'list'], /kata-resources sandbox list/],
  [['sandbox', 'share'], /kata-resources sandbox share ID --source DIR/],
  [['sandbox', 'unshare'], /kata-resources sandbox unshare ID NAME/],
  [['exec'], /kata-resources exec ID .*-- CMD/],
  [['check'], /kata-resources check/],
  [['demo'], /kata-resources demo/],
  [['guest-kit'], /kata-resources guest-kit/],
];

t.test('--help of the tool and of every command exits 0 and prints its usage on stdout', async (t) => {
  for (const h of ['--help', '-h', 'help']) {
    const r = await cli([h]);
    t.equal(r.code, 0, `${h} exits 0`);
    t.match(r.stdout, /^kata-resources: /, `${h} prints the overview`);
    for (const [cmd] of COMMANDS) t.match(r.stdout, `kata-resources ${cmd.join(' ')}`, `the overview lists ${cmd.join(' ')}`);
    t.equal(r.stderr, '', 'nothing on stderr');
  }
  const none = await cli([]);
  t.equal(none.code, 0, 'no arguments prints the overview');
  t.match(none.stdout, /Usage:/);
  for (const [cmd, usage] of COMMANDS) {
    const r = await cli([...cmd, '--help']);
    t.equal(r.code, 0, `${cmd.join(' ')} --help exits 0`);
    t.match(r.stdout, usage, `${cmd.join(' ')} --help prints its usage`);
  }
  const sb = await cli(['sandbox', '--help']);
  t.equal(sb.code, 0, 'sandbox --help exits 0');
  t.match(sb.stdout, /up\|status\|down\|list/);
});

t.test('--version', async (t) => {
  const r = await cli(['--version']);
  t.equal(r.code, 0);
  t.match(r.stdout, /^kata-resources \d+\.\d+\.\d+ \(commit ([0-9a-f]{40}|unknown)(, with uncommitted changes)?\)\n$/);
});

t.test('usage errors exit 2 and name what is wrong', async (t) => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['sandbox', 'frob'], /unknown command "sandbox frob"/],
    [['sandbox', 'up', '--bogus'], /unknown option --bogus/],
    [['sandbox', 'up', '--id'], /--id needs a value/],
    [['sandbox', 'status'], /needs a sandbox ID/],
    [['sandbox', 'down'], /needs a sandbox ID/],
    [['sandbox', 'share', 'x'], /needs --source/],
    [['sandbox', 'unshare', 'x'], /usage: kata-resources sandbox unshare ID NAME/],
    [['exec', 'x'], /usage: kata-resources exec ID .*-- CMD/],
    [['exec', '--', 'true'], /usage: kata-resources exec ID .*-- CMD/],
  ];
  for (const [args, msg] of cases) {
    const r = await cli(args);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, msg, `${args.join(' ')}: ${r.stderr.trim()}`);
    t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
  }
  const j = await cli(['frobnicate', '--json']);
  t.equal(j.code, 2);
  t.equal(parseJson<{ error: { code: string } }>(j).error.code, 'E_INVALID_ARGUMENT', 'with --json the error is one JSON object');
});

t.test('a sandbox that does not exist: down is harmless, status and exec fail, list is empty', async (t) => {
  const rt = tempRuntime(t);
  const C = ['--config', rt.config];
  const id = `krt-nosuch-${process.pid}`;
  const d = await cli(['sandbox', 'down', id, ...C, '--json']);
  t.equal(d.code, 0, 'down of an unknown id exits 0');
  t.same(parseJson(d), { id, state: 'absent', via: 'none' }, 'and says absent');
  const dt = await cli(['sandbox', 'down', id, ...C]);
  t.equal(dt.code, 0);
  t.match(dt.stdout, /not found; nothing to do/, 'text form says there was nothing to do');
  const s = await cli(['sandbox', 'status', id, ...C, '--json']);
  t.equal(s.code, 1, 'status of an unknown id exits 1');
  t.equal(parseJson<{ error: { code: string } }>(s).error.code, 'E_SANDBOX_NOT_FOUND');
  const e = await cli(['exec', id, ...C, '--', 'true']);
  t.equal(e.code, 1, 'exec into an unknown id exits 1');
  t.match(e.stderr, /E_SANDBOX_NOT_FOUND/);
  const sh = await cli(['sandbox', 'share', id, '--source', rt.dir, ...C]);
  t.equal(sh.code, 1, 'share into an unknown id exits 1');
  const l = await cli(['sandbox', 'list', ...C, '--json']);
  t.equal(l.code, 0);
  t.same(parseJson(l), [], 'list --json is an empty array');
  const lt = await cli(['sandbox', 'list', ...C]);
  t.match(lt.stdout, /no sandboxes/);
  const bad = await cli(['sandbox', 'down', '../etc', ...C, '--json']);
  t.equal(bad.code, 1, 'an id with a path in it is refused');
  t.equal(parseJson<{ error: { code: string } }>(bad).error.code, 'E_INVALID_NAME');
  t.notOk(existsSync(`${rt.stateDir}/sandboxes/${id}`), 'no state was made for the unknown id');
});

interface CheckItem {
  name: string;
  ok: boolean;
  severity: string;
  detail: string;
  fix?: string;
}

t.test('check --json: KVM is probed (not usable on this machine) and the kernel features are tried', async (t) => {
  const rt = tempRuntime(t);
  const r = await cli(['check', '--config', rt.config, '--json'], { timeoutMs: 120_000 });
  const items = parseJson<CheckItem[]>(r);
  t.ok(Array.isArray(items) && items.length > 10, `${items.length} items`);
  const failed = items.filter((i) => !i.ok && i.severity === 'fail');
  t.equal(r.code, failed.length === 0 ? 0 : 1, 'exit 1 exactly when a required feature is missing');
  t.same(
    failed.map((i) => i.name),
    [],
    'nothing required is missing here',
  );
  for (const i of items) {
    t.ok(
      typeof i.name === 'string' && typeof i.ok === 'boolean' && ['fail', 'warn'].includes(i.severity) && typeof i.detail === 'string',
      `item shape: ${i.name}`,
    );
    if (!i.ok) t.ok(i.fix, `${i.name} fails with a fix: ${i.fix}`);
  }
  const kvm = items.find((i) => i.name === 'KVM');
  t.ok(kvm, 'a KVM item');
  if (existsSync('/dev/kvm')) {
    t.notMatch(kvm?.detail ?? '', /not probed/, 'KVM is probed, not assumed from /dev/kvm');
    // On this project's machine a KVM guest cannot run (the probe boot aborts or hangs). Set
    // KRT_KVM_USABLE=1 on a host where KVM works.
    const usable = process.env.KRT_KVM_USABLE === '1';
    t.equal(kvm?.ok, usable, `KVM ${usable ? 'usable' : 'not usable'}: ${kvm?.detail}`);
    if (!usable) t.match(kvm?.detail ?? '', /TCG/, 'guests run under TCG');
  }
  const feature = (n: string): CheckItem | undefined => items.find((i) => i.name === n);
  for (const n of ['kernel: veth', 'kernel: tun/tap', 'kernel: ingress qdisc', 'kernel: u32 + mirred']) {
    t.equal(feature(n)?.ok, true, `${n}: ${feature(n)?.detail}`);
    t.equal(feature(n)?.severity, 'fail', `${n} is required`);
  }
  // This host kernel has no ipvlan (see the project notes): the probe really tries, it does not rubber-stamp.
  const ipvlan = feature('kernel: ipvlan');
  t.ok(ipvlan, 'an ipvlan item');
  if (ipvlan && !ipvlan.ok) t.equal(ipvlan.severity, 'warn', 'missing ipvlan is only a warning');
  const tc = await cli(['check', '--config', rt.config], { timeoutMs: 120_000 });
  t.match(tc.stdout, /host can run sandboxes/, 'the text form sums up');
});
