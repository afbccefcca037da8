import { IPFamily } from '../../host/agent-types.js';
import { KataError, isKataError } from '../../host/errors.js';
import { validateIfName } from '../../host/names.js';
import { netnsLabel } from '../../host/netns.js';
import type { PluginContext } from '../../host/plugin.js';
import type { ScannedLink } from './types.js';

/**
 * Links of a namespace as `ip -json -details addr show` prints them: one read gives every link with
 * its kind (linkinfo.info_kind), tun mode (linkinfo.info_data.type), parent bus/device (iproute2 6.1
 * prints "parentbus"/"parentdev" for devices on a bus: a PCI NIC or VF) and addresses.
 */

/** Kernel IFF_* bits by the names `ip -json` prints in "flags". */
const IFF_BITS: Readonly<Record<string, number>> = {
  UP: 0x1,
  BROADCAST: 0x2,
  DEBUG: 0x4,
  LOOPBACK: 0x8,
  POINTOPOINT: 0x10,
  NOTRAILERS: 0x20,
  RUNNING: 0x40,
  NOARP: 0x80,
  PROMISC: 0x100,
  ALLMULTI: 0x200,
  MASTER: 0x400,
  SLAVE: 0x800,
  MULTICAST: 0x1000,
  PORTSEL: 0x2000,
  AUTOMEDIA: 0x4000,
  DYNAMIC: 0x8000,
  LOWER_UP: 0x10000,
  DORMANT: 0x20000,
  ECHO: 0x40000,
};

/** The subset of an `ip -json -details addr show` entry that is read here. */
export interface IpAddrJson {
  ifindex: number;
  ifname: string;
  flags?: string[];
  mtu?: number;
  txqlen?: number;
  address?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
  parentbus?: string;
  parentdev?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[];
}

/**
 * Raw IFF flags from the names ip prints. ip folds IFF_RUNNING into "NO-CARRIER" (printed when UP
 * and not RUNNING), so RUNNING is reconstructed as UP && !NO-CARRIER.
 */
export function flagsFromNames(names: readonly string[] | undefined): number {
  let f = 0;
  const set = new Set(names ?? []);
  for (const n of set) f |= IFF_BITS[n] ?? 0;
  if (set.has('UP') && !set.has('NO-CARRIER')) f |= IFF_BITS.RUNNING!;
  return f;
}

const PCI_BDF = /^[0-9a-fA-F]{4,}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;

/** One entry of `ip -json -details addr show` as a ScannedLink. */
function parseLink(e: IpAddrJson): ScannedLink {
  const kind = e.linkinfo?.info_kind ?? '';
  const rawFlags = flagsFromNames(e.flags);
  const link: ScannedLink = {
    name: e.ifname,
    index: e.ifindex,
    kind,
    mac: (e.address ?? '').toLowerCase(),
    mtu: e.mtu ?? 0,
    txqlen: e.txqlen ?? 0,
    up: (rawFlags & IFF_BITS.UP!) !== 0,
    rawFlags,
    addresses: [],
  };
  if (kind === 'tun') {
    const t = e.linkinfo?.info_data?.type;
    if (t === 'tap' || t === 'tun') link.tunMode = t;
    if (e.linkinfo?.info_data?.multi_queue === true) link.tunMultiQueue = true;
  }
  // ethtool's bus info for a PCI NIC is its BDF; ip -d prints the same as parentbus/parentdev.
  if (e.parentbus === 'pci' && typeof e.parentdev === 'string' && PCI_BDF.test(e.parentdev)) link.pciAddress = e.parentdev;
  for (const a of e.addr_info ?? []) {
    if (typeof a.local !== 'string' || typeof a.prefixlen !== 'number') continue;
    if (a.family !== 'inet' && a.family !== 'inet6') continue;
    link.addresses.push({ family: a.family === 'inet' ? IPFamily.v4 : IPFamily.v6, address: a.local, mask: String(a.prefixlen) });
  }
  return link;
}

/** The output of `ip -json -details addr show` (parsed or text) as ScannedLinks, in kernel order. */
export function parseLinks(ipJsonDetailedAddrOutput: string | readonly IpAddrJson[]): ScannedLink[] {
  const arr: unknown =
    typeof ipJsonDetailedAddrOutput === 'string'
      ? ipJsonDetailedAddrOutput.trim() === ''
        ? []
        : JSON.parse(ipJsonDetailedAddrOutput)
      : ipJsonDetailedAddrOutput;
  if (!Array.isArray(arr)) throw new KataError('E_INTERNAL', 'ip -json addr show did not print an array');
  return (arr as IpAddrJson[]).filter((e) => e && typeof e.ifname === 'string' && typeof e.ifindex === 'number').map(parseLink);
}

/** Every link of ctx.netns, read once. */
export async function readLinks(ctx: Pick<PluginContext, 'netlink' | 'netns'>): Promise<ScannedLink[]> {
  return parseLinks(await ctx.netlink.json<IpAddrJson[]>('ip', ctx.netns, ['-details', 'addr', 'show']));
}

/** One link of ctx.netns by name; E_LINK_NOT_FOUND (naming the link and the namespace) when it is absent. */
export async function readLink(ctx: Pick<PluginContext, 'netlink' | 'netns'>, name: string): Promise<ScannedLink> {
  validateIfName(name);
  let out: IpAddrJson[];
  try {
    out = await ctx.netlink.json<IpAddrJson[]>('ip', ctx.netns, ['-details', 'addr', 'show', 'dev', name]);
  } catch (e) {
    if (
      isKataError(e, 'E_LINK_NOT_FOUND') ||
      (isKataError(e) && /does not exist|Cannot find device/i.test(e.message) && !isKataError(e, 'E_NETNS_NOT_FOUND'))
    ) {
      throw linkNotFound(name, ctx.netns, e);
    }
    throw e;
  }
  const l = parseLinks(out).find((x) => x.name === name);
  if (!l) throw linkNotFound(name, ctx.netns);
  return l;
}

export function linkNotFound(name: string, ns: PluginContext['netns'], cause?: unknown): KataError {
  return new KataError(
    'E_LINK_NOT_FOUND',
    `link ${name} does not exist in network namespace ${netnsLabel(ns)} (it may have been deleted meanwhile); rescan the namespace`,
    { link: name, netns: ns?.path },
    cause === undefined ? undefined : { cause },
  );
}
