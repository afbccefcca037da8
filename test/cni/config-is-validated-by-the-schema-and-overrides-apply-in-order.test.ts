import t from 'tap';
import { buildConfig, DEFAULTS, parseConfig } from '../../cni/config.js';
import { parseCniArgs } from '../../cni/cni-args.js';
import { CniError } from '../../cni/errors.js';
import { endpointIndex, expandTapName } from '../../cni/tap-name.js';
import { TAP_NAME_PATTERN } from '../../cni/config.js';

/** The request config: schema errors name the field, defaults, CNI_ARGS then args.cni overrides. */

const base = { cniVersion: '1.0.0', name: 'net', type: 'kata-cni' };

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error('no error thrown');
}

t.test('defaults', async (t) => {
  const c = buildConfig({ ...base }, 'ADD', '');
  t.match(c, {
    cniVersion: '1.0.0',
    name: 'net',
    model: 'tcfilter',
    tapName: 'tap{index}_kata',
    queues: 1,
    vhostNet: true,
    stateDir: '/run/kata-cni',
  });
  t.same(DEFAULTS.model, 'tcfilter');
  t.notOk('owner' in c);
});

t.test('unknown keys (runtimes add their own) are accepted and ignored', async (t) => {
  t.doesNotThrow(() =>
    buildConfig({ ...base, capabilities: { mac: true }, runtimeConfig: { mac: 'x' }, somethingNew: [1], ipMasq: true }, 'ADD', ''),
  );
});

t.test('errors name the field, wrong types are code 7, unsupported enum values code 2 with key and value', async (t) => {
  const cases: [Record<string, unknown>, number, RegExp][] = [
    [{ ...base, queues: 1.5 }, 7, /field "queues" must be integer \(got 1.5\)/],
    [{ ...base, queues: 300 }, 7, /field "queues" must be <= 256/],
    [{ ...base, group: 'x' }, 7, /field "group" must be integer/],
    [{ ...base, stateDir: 'relative' }, 7, /field "stateDir" must match pattern/],
    [{ ...base, logLevel: 'loud' }, 2, /unsupported value "loud" for field "logLevel"/],
    [{ ...base, model: 'none' }, 2, /unsupported value "none" for field "model" \(supported: tcfilter, macvtap\)/],
    [{ ...base, name: 'bad/name' }, 7, /field "name" must match pattern/],
    [{ cniVersion: '1.0.0', name: 'n' }, 7, /field "type" is required/],
    [{ ...base, prevResult: { ips: [{ address: 3 }] } }, 7, /field "prevResult\.ips\[0\]\.address" must be string/],
    [{ ...base, 'cni.dev/valid-attachments': [{ containerID: 'a' }] }, 7, /field "cni\.dev\/valid-attachments\[0\]\.ifname" is required/],
    [{ ...base, cniVersion: '2.0.0' }, 1, /incompatible CNI versions/],
  ];
  for (const [cfg, code, msg] of cases) {
    const e = cniError(() => buildConfig(cfg, 'ADD', ''));
    t.equal(e.cniCode, code, `${JSON.stringify(cfg)} -> ${e.message}`);
    t.match(e.message, msg);
  }
});

t.test('every problem is listed in details', async (t) => {
  const e = cniError(() => buildConfig({ ...base, queues: 'x', owner: -2 }, 'ADD', ''));
  t.match(e.details, /queues/);
  t.match(e.details, /owner/);
});

t.test('DEL tolerates a damaged prevResult (drops it), ADD does not', async (t) => {
  const cfg = { ...base, prevResult: { interfaces: 'nope' } };
  t.equal(cniError(() => buildConfig(cfg, 'ADD', '')).cniCode, 7);
  const c = buildConfig(cfg, 'DEL', '');
  t.equal(c.prevResult, undefined);
  t.equal(cniError(() => buildConfig({ ...cfg, queues: 'x' }, 'DEL', '')).cniCode, 7, 'other errors still count on DEL');
});

t.test('decode errors are code 6', async (t) => {
  t.equal(cniError(() => parseConfig('nope', 'ADD', '')).cniCode, 6);
  t.equal(cniError(() => parseConfig('"str"', 'ADD', '')).cniCode, 6);
  t.equal(cniError(() => parseConfig('null', 'ADD', '')).cniCode, 6);
});

t.test('overrides: config < CNI_ARGS < args.cni', async (t) => {
  const cfg = { ...base, tapName: 'a{index}', owner: 1, group: 2, queues: 1, args: { cni: { group: 30, queues: 4 } } };
  const c = buildConfig(cfg, 'ADD', 'KATA_TAP_NAME=b{index};KATA_TAP_UID=10;KATA_TAP_GID=20;KATA_TAP_QUEUES=2');
  t.match(c, { tapName: 'b{index}', owner: 10, group: 30, queues: 4 });
});

t.test('GC keys: cni.dev/valid-attachments, else the older cni.dev/attachments', async (t) => {
  const v = [{ containerID: 'a', ifname: 'eth0' }];
  t.same(buildConfig({ ...base, cniVersion: '1.1.0', 'cni.dev/valid-attachments': v }, 'GC', '').validAttachments, v);
  t.same(buildConfig({ ...base, cniVersion: '1.1.0', 'cni.dev/attachments': v }, 'GC', '').validAttachments, v);
  t.same(
    buildConfig({ ...base, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [], 'cni.dev/attachments': v }, 'GC', '').validAttachments,
    [],
    'the new key wins',
  );
  t.equal(buildConfig({ ...base, cniVersion: '1.1.0' }, 'GC', '').validAttachments, undefined);
});

t.test('CNI_ARGS parsing', async (t) => {
  t.same(parseCniArgs('', TAP_NAME_PATTERN), {});
  t.same(parseCniArgs('TC_REDIRECT_TAP_NAME=x{index};TC_REDIRECT_TAP_UID=5;;', TAP_NAME_PATTERN), { tapName: 'x{index}', owner: 5 });
  t.same(
    parseCniArgs('K8S_POD_NAME=a;K8S_POD_NAMESPACE=b;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=d', TAP_NAME_PATTERN),
    {},
    'Kubernetes keys always pass',
  );
  t.same(parseCniArgs('FOO=1;IgnoreUnknown=true', TAP_NAME_PATTERN), {}, 'IgnoreUnknown anywhere in the list');
  for (const [args, msg] of [
    ['FOO=1', /unknown key "FOO"/],
    ['=1', /is not of the form KEY=VALUE/],
    ['KATA_TAP_QUEUES=0', /KATA_TAP_QUEUES=0 must be an integer from 1 to 256/],
    ['KATA_TAP_UID=1e3', /KATA_TAP_UID=1e3 must be an integer/],
    ['KATA_TAP_NAME=a b', /not a valid tap name template/],
    ['KATA_TAP_NAME=a=b', /KATA_TAP_NAME=a=b is not a valid tap name template/],
  ] as const) {
    const e = cniError(() => parseCniArgs(args, TAP_NAME_PATTERN));
    t.equal(e.cniCode, 4, args);
    t.match(e.message, msg);
  }
});

t.test('tap name templates', async (t) => {
  t.equal(endpointIndex('eth0'), 0);
  t.equal(endpointIndex('net12'), 12);
  t.equal(endpointIndex('lan'), 0);
  t.equal(expandTapName('tap{index}_kata', 'net3'), 'tap3_kata');
  t.equal(expandTapName('{ifname}_kt', 'eth0'), 'eth0_kt');
  t.equal(expandTapName('t{index}{ifname}', 'e1'), 't1e1');
  t.equal(cniError(() => expandTapName('{ifname}{ifname}', 'abcdefgh')).cniCode, 7);
  t.equal(cniError(() => expandTapName('{ifname}', 'eth0')).cniCode, 7);
});
