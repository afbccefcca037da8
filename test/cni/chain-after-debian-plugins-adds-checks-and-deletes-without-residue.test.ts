import t from 'tap';
import { run } from '../../host/exec.js';
import { tempNetns } from '../helpers/netns.js';
import {
  addList,
  checkList,
  delList,
  DEBIAN_CNI_DIR,
  filesUnder,
  installKataCni,
  tempDir,
  type NetworkList,
  type PluginConf,
  type RuntimeOptions,
} from './helpers/cni-runtime.js';
import { namesIn, redirectState } from './helpers/inspect.js';

/**
 * kata-cni chained after Debian's real plugins, driven exactly as libcni drives a conflist: ADD in
 * order with prevResult passed along, CHECK and DEL (reverse order) with the cached final result.
 * All plugins run inside a test "host" namespace; host-local keeps its store in a temp dir.
 */

const IP_FILE = /^[^/]+\/\d+\.\d+\.\d+\.\d+$/;

type Interfaces = { name: string; mac?: string; mtu?: number; sandbox?: string }[];
type Ips = { version?: string; address: string; interface?: number }[];

interface Case {
  label: string;
  first: (p: { ipamDir: string; subnet: string; master: string }) => PluginConf;
  /** Host-side setup before ADD (macvlan needs its master there). */
  hostSetup?: (hostNs: string, master: string) => Promise<void>;
  mtu: number;
}

const CASES: Case[] = [
  {
    label: 'ptp + host-local',
    mtu: 1400,
    first: ({ ipamDir, subnet }) => ({
      type: 'ptp',
      ipMasq: false,
      mtu: 1400,
      ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
      dns: { nameservers: ['10.0.0.53'] },
    }),
  },
  {
    label: 'bridge + host-local',
    mtu: 1500,
    first: ({ ipamDir, subnet }) => ({
      type: 'bridge',
      bridge: 'krtbr0',
      isGateway: true,
      ipMasq: false,
      ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
    }),
  },
  {
    label: 'macvlan (master: a veth in the test host namespace) + host-local',
    mtu: 1500,
    hostSetup: async (hostNs, master) => {
      await run('ip', ['-n', hostNs, 'link', 'add', master, 'type', 'veth', 'peer', 'name', `${master}p`]);
      await run('ip', ['-n', hostNs, 'link', 'set', master, 'up']);
      await run('ip', ['-n', hostNs, 'link', 'set', `${master}p`, 'up']);
    },
    first: ({ ipamDir, subnet, master }) => ({
      type: 'macvlan',
      master,
      mode: 'bridge',
      ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet }]] },
    }),
  },
];

let n = 0;
for (const cniVersion of ['0.4.0', '1.0.0']) {
  for (const c of CASES) {
    const subnet = `10.98.${10 + n++}.0/24`;
    t.test(`[${cniVersion}] ${c.label} -> kata-cni: ADD result, tap + redirects, CHECK, DEL in reverse, nothing left`, async (t) => {
      const bin = await installKataCni(t);
      const host = await tempNetns(t, 'cnih');
      const ctr = await tempNetns(t, 'cnic');
      const ipamDir = tempDir(t, 'ipam');
      const stateDir = tempDir(t, 'state');
      const master = 'krtm0';
      if (c.hostSetup) await c.hostSetup(host.name!, master);
      const list: NetworkList = {
        cniVersion,
        name: `krt-chain-${n}`,
        plugins: [c.first({ ipamDir, subnet, master }), { type: 'kata-cni', stateDir }],
      };
      const opts: RuntimeOptions = { hostNs: host, path: [DEBIAN_CNI_DIR, bin] };
      // containerd's CRI passes /var/run/netns/...; ptp then reports that spelling as the sandbox.
      const netnsPath = cniVersion === '1.0.0' ? `/var/run/netns/${ctr.name}` : ctr.path;
      const att = { containerId: `krtc${n}`, netns: netnsPath, ifname: 'eth0', args: 'IgnoreUnknown=1;K8S_POD_NAME=p' };

      const result = await addList(list, att, opts);
      t.equal(result.cniVersion, cniVersion, 'result in the config version');
      const ifs = result.interfaces as Interfaces;
      const tapEntry = ifs[ifs.length - 1]!;
      t.match(
        tapEntry,
        { name: 'tap0_kata', sandbox: netnsPath, mac: /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/ },
        'the tap is appended with its sandbox and MAC',
      );
      t.notOk('mtu' in tapEntry, `no mtu field before 1.1.0`);
      t.ok(
        ifs.some((i) => i.name === 'eth0' && i.sandbox === netnsPath),
        'the container interface is still listed',
      );
      const ips = result.ips as Ips;
      t.ok(ips.length >= 1, 'the IPs pass through');
      t.equal(ifs[ips[0]!.interface!]?.name, 'eth0', 'ips[].interface still points at eth0');
      if (cniVersion === '0.4.0') t.equal(ips[0]!.version, '4', '0.4.0 ips carry "version"');
      else t.notOk('version' in ips[0]!, '1.0.0 ips carry no "version"');

      const st = await redirectState(ctr, 'eth0', 'tap0_kata');
      t.match(st.tap, { kind: 'tun', mode: 'tap', up: true, mtu: c.mtu }, 'a tap with the MTU of eth0');
      t.equal(st.link?.mtu, c.mtu);
      t.equal(st.tap?.mac, tapEntry.mac, 'the result reports the tap MAC');
      t.same(st.ingress, ['eth0', 'tap0_kata'], 'ingress qdiscs on both');
      t.same(st.redirects, ['eth0>tap0_kata', 'tap0_kata>eth0'], 'redirect filters both ways');
      t.same(filesUnder(stateDir), [`${list.name}/${att.containerId}@eth0.json`], 'one attachment record');

      await checkList(list, att, result, opts);
      t.pass('CHECK of the whole list succeeds');

      await delList(list, att, result, opts);
      t.same(await namesIn(ctr), ['lo'], 'container namespace: only lo left');
      t.same(filesUnder(stateDir), [], 'no attachment record left');
      t.same(
        filesUnder(ipamDir).filter((f) => IP_FILE.test(f)),
        [],
        'the IP is released',
      );
      const hostLinks = await namesIn(host);
      t.notOk(
        hostLinks.some((l) => l.startsWith('veth')),
        'no host-side veth left',
      );

      await delList(list, att, result, opts);
      t.pass('a second DEL of the list succeeds');
    });
  }
}
