import t from 'tap';
import { run } from '../../host/exec.js';
import type { NetnsRef } from '../../host/netns.js';
import { tempNetns } from '../helpers/netns.js';
import {
  addList,
  checkList,
  DEBIAN_CNI_DIR,
  delList,
  filesUnder,
  installKataCni,
  type NetworkList,
  type RuntimeOptions,
  tempDir,
} from './helpers/cni-runtime.js';
import { namesIn } from './helpers/inspect.js';

/**
 * With `"resultConvention": "tc-redirect-tap"` a conflist can swap tc-redirect-tap for kata-cni
 * and its result still serves what reads tc-redirect-tap's: firecracker-go-sdk builds a VM's
 * network from it with vmconf.StaticNetworkConfFrom. staticNetworkConfFrom below is a small
 * reimplementation of that function's selection logic, from awslabs/tc-redirect-tap (Apache-2.0)
 * at commit 0076d755657463e7748c7c9afc6f482ddc9759a5: vmconf/vmconf.go (StaticNetworkConfFrom,
 * mtuOf) and internal/cniutil.go (VMTapPair, FilterBySandbox, IfacesWithName, InterfaceIPs);
 * firecracker-go-sdk's cni/vmconf is the same code. Run on kata-cni's result after Debian's ptp.
 */
type Iface = { name: string; mac?: string; sandbox?: string };
type IpConf = { address: string; gateway?: string; interface?: number };
type Result = { interfaces?: Iface[]; ips?: IpConf[]; routes?: unknown[]; dns?: { nameservers?: string[] } };

interface StaticNetworkConf {
  tapName: string;
  netNSPath: string;
  vmMacAddr: string | undefined;
  vmMTU: number;
  vmIPConfig: IpConf;
  vmRoutes: unknown[] | undefined;
  vmNameservers: string[] | undefined;
}

class VmconfError extends Error {}

/** VMTapPair: exactly one interface in sandbox vmID, and exactly one other interface of its name (the tap). */
function vmTapPair(r: Result, vmID: string): { vm: Iface; tap: Iface } {
  const all = r.interfaces ?? [];
  const vmIfaces = all.filter((i) => (i.sandbox ?? '') === vmID);
  const others = all.filter((i) => (i.sandbox ?? '') !== vmID);
  if (vmIfaces.length > 1) throw new VmconfError(`expected to find at most 1 interface in sandbox "${vmID}", found ${vmIfaces.length}`);
  if (vmIfaces.length === 0) throw new VmconfError(`link not found: pseudo-device for ${vmID}`);
  const vm = vmIfaces[0]!;
  const taps = others.filter((i) => i.name === vm.name);
  if (taps.length > 1) throw new VmconfError(`expected to find at most 1 interface with name "${vm.name}", found ${taps.length}`);
  if (taps.length === 0) throw new VmconfError(`link not found: ${vm.name}`);
  return { vm, tap: taps[0]! };
}

/** InterfaceIPs: the IPs whose interface index names an interface of that name and sandbox. */
function interfaceIPs(r: Result, name: string, sandbox: string | undefined): IpConf[] {
  return (r.ips ?? []).filter((ip) => {
    if (ip.interface === undefined) return false;
    const i = r.interfaces?.[ip.interface];
    return i !== undefined && i.name === name && (i.sandbox ?? '') === (sandbox ?? '');
  });
}

/** mtuOf: the tap's MTU, read from the kernel inside the tap's namespace. */
async function mtuOf(tapName: string, netnsPath: string): Promise<number> {
  const out = (await run('nsenter', [`--net=${netnsPath}`, 'ip', '-j', 'link', 'show', 'dev', tapName])).stdout;
  return (JSON.parse(out) as { mtu: number }[])[0]!.mtu;
}

async function staticNetworkConfFrom(r: Result, containerID: string): Promise<StaticNetworkConf> {
  const { vm, tap } = vmTapPair(r, containerID);
  const vmIPs = interfaceIPs(r, vm.name, vm.sandbox);
  if (vmIPs.length !== 1) throw new VmconfError(`expected to find 1 IP for vm interface "${vm.name}", found ${vmIPs.length}`);
  return {
    tapName: tap.name,
    netNSPath: tap.sandbox ?? '',
    vmMacAddr: vm.mac,
    vmMTU: await mtuOf(tap.name, tap.sandbox ?? ''),
    vmIPConfig: vmIPs[0]!,
    vmRoutes: r.routes,
    vmNameservers: r.dns?.nameservers,
  };
}

async function eth0(ns: NetnsRef): Promise<{ mac: string; mtu: number }> {
  const l = JSON.parse((await run('ip', ['-n', ns.name!, '-j', 'link', 'show', 'dev', 'eth0'])).stdout) as {
    address: string;
    mtu: number;
  }[];
  return { mac: l[0]!.address, mtu: l[0]!.mtu };
}

let n = 0;
for (const cniVersion of ['0.4.0', '1.0.0']) {
  t.test(`[${cniVersion}] ptp -> kata-cni (tc-redirect-tap convention): vmconf finds the tap, the VM MAC, IP, MTU`, async (t) => {
    const bin = await installKataCni(t);
    const host = await tempNetns(t, 'fch');
    const ctr = await tempNetns(t, 'fcc');
    const ipamDir = tempDir(t, 'fcipam');
    const stateDir = tempDir(t, 'fcstate');
    const subnet = `10.97.${20 + n++}.0/24`;
    const list: NetworkList = {
      cniVersion,
      name: `krt-fc-${n}`,
      plugins: [
        {
          type: 'ptp',
          ipMasq: false,
          mtu: 1420,
          ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
          dns: { nameservers: ['10.0.0.53'] },
        },
        { type: 'kata-cni', stateDir, resultConvention: 'tc-redirect-tap' },
      ],
    };
    const opts: RuntimeOptions = { hostNs: host, path: [DEBIAN_CNI_DIR, bin] };
    const att = { containerId: `krtvm${n}`, netns: ctr.path, ifname: 'eth0', args: 'IgnoreUnknown=1;TC_REDIRECT_TAP_NAME=tap1' };

    const result = (await addList(list, att, opts)) as Result;
    const podIp = (result.ips ?? []).find((ip) => result.interfaces?.[ip.interface ?? -1]?.name === 'eth0')!;
    const conf = await staticNetworkConfFrom(result, att.containerId);
    const link = await eth0(ctr);
    t.equal(conf.tapName, 'tap1', 'the tap named by TC_REDIRECT_TAP_NAME');
    t.equal(conf.netNSPath, ctr.path, 'the namespace the VMM must run in');
    t.equal(conf.vmMacAddr, link.mac, "the VM uses eth0's MAC (the redirect carries eth0's frames)");
    t.equal(conf.vmMTU, 1420, "the tap has eth0's MTU");
    t.equal(link.mtu, 1420);
    t.same(conf.vmIPConfig, { ...podIp, interface: (result.interfaces ?? []).length - 1 }, "eth0's address and gateway, for the VM");
    t.same(conf.vmNameservers, ['10.0.0.53'], 'DNS passes through');
    t.same(conf.vmRoutes, [{ dst: '0.0.0.0/0' }], 'routes pass through');
    const tapEntry = result.interfaces?.find((i) => i.name === 'tap1' && i.sandbox === ctr.path);
    t.match(tapEntry, { mac: /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/ }, "the tap entry carries the tap's own MAC, as tc-redirect-tap's does");
    t.not(tapEntry?.mac, link.mac);

    await checkList(list, att, result as Record<string, unknown>, opts);
    t.pass('CHECK of the list with this result succeeds');
    await delList(list, att, result as Record<string, unknown>, opts);
    t.same(await namesIn(ctr), ['lo'], 'DEL leaves only lo');
    t.same(filesUnder(stateDir), [], 'no record left');
  });
}

t.test('the default convention adds only the tap: vmconf finds no pseudo-device (why the option exists)', async (t) => {
  const bin = await installKataCni(t);
  const host = await tempNetns(t, 'fch');
  const ctr = await tempNetns(t, 'fcc');
  const ipamDir = tempDir(t, 'fcipam');
  const stateDir = tempDir(t, 'fcstate');
  const list: NetworkList = {
    cniVersion: '1.0.0',
    name: 'krt-fc-default',
    plugins: [
      { type: 'ptp', ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: '10.97.40.0/24' }]] } },
      { type: 'kata-cni', stateDir },
    ],
  };
  const opts: RuntimeOptions = { hostNs: host, path: [DEBIAN_CNI_DIR, bin] };
  const att = { containerId: 'krtvmdef', netns: ctr.path, ifname: 'eth0' };
  const result = (await addList(list, att, opts)) as Result;
  await t.rejects(staticNetworkConfFrom(result, att.containerId), /pseudo-device for krtvmdef/);
  await delList(list, att, result as Record<string, unknown>, opts);
  t.same(await namesIn(ctr), ['lo']);
});
