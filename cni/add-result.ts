import type { ResultConvention } from './config.js';
import { type CniResult, sameNetns } from './result.js';

/**
 * What ADD returns: prevResult plus the tap, `{name, mac, mtu, sandbox: CNI_NETNS}` (the tap's own
 * MAC). With the "tc-redirect-tap" convention also what that plugin adds (awslabs/tc-redirect-tap,
 * cmd/tc-redirect-tap/main.go, add()) and what firecracker-go-sdk's vmconf.StaticNetworkConfFrom
 * looks for: a pseudo interface for the VM with the tap's name, `sandbox` = CNI_CONTAINERID (the VM
 * id), the MAC the guest must use, and a copy of every IP of CNI_IFNAME pointing at it.
 */
export interface TapEntry {
  name: string;
  mac: string;
  mtu: number;
}

export function addResult(
  prev: CniResult,
  p: { tap: TapEntry; netns: string; ifname: string; containerId: string; guestMac: string; convention: ResultConvention },
): CniResult {
  const interfaces = [...(prev.interfaces ?? []), { name: p.tap.name, mac: p.tap.mac, mtu: p.tap.mtu, sandbox: p.netns }];
  const result: CniResult = { ...prev, interfaces };
  if (p.convention !== 'tc-redirect-tap') return result;
  const vm = interfaces.push({ name: p.tap.name, mac: p.guestMac, mtu: p.tap.mtu, sandbox: p.containerId }) - 1;
  const podIps = (prev.ips ?? []).filter((ip) => {
    const i = ip.interface === undefined ? undefined : prev.interfaces?.[ip.interface];
    return i !== undefined && i.name === p.ifname && sameNetns(i.sandbox, p.netns);
  });
  result.ips = [...(prev.ips ?? []), ...podIps.map((ip) => ({ ...ip, interface: vm }))];
  return result;
}
