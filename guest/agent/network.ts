/**
 * The agent's network calls, as the Kata agent does them (rpc.rs::update_interface, netlink.rs):
 *
 * - UpdateInterface: find the link by hwAddr, else by devicePath (waiting for a hotplugged PCI netdev),
 *   else by device/name; set it down, replace its addresses (addresses not asked for are removed,
 *   IPv6 link-local ones kept), set the MTU, the name (a link already holding that name swaps names
 *   with it), ARP from raw_flags (IFF_NOARP), then up.
 * - UpdateRoutes: routes without a gateway first, then those with one; `replace` semantics, EEXIST ignored;
 *   all or nothing: when one fails, what the others changed is put back (route-rollback.ts).
 * - AddARPNeighbors: `neigh replace`, state PERMANENT when 0.
 *
 * Everything goes through an Ip (ip.ts), so host tests run it against a namespace they created.
 */
import { fsp } from './builtins.js';
import { join } from 'node:path';
import type { ARPNeighbor, Interface, IPAddress, Route } from '../../host/agent-types.js';
import { throwFirstFailure, type Ip } from './ip.js';
import { childrenOfKind, pciDeviceDir, pciPathOf, waitFor } from './pci-path.js';
import { allOrNothing } from './route-rollback.js';
import { AgentError } from './protocol.js';

export interface NetworkContext {
  ip: Ip;
  /** sysfs root for devicePath lookups ("/sys" in the guest); undefined disables them (host tests). */
  sysfs?: string;
  /** How long to wait for a hotplugged netdev named by devicePath. */
  deviceTimeoutMs?: number;
  /** Whether IPv6 is disabled on a link (Kata skips IPv6 addresses then). Default: read /proc/sys. */
  ipv6Disabled?: (ifname: string) => Promise<boolean>;
}

/** One entry of `ip -json -details addr show`. */
export interface IpAddrLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  link_type?: string;
  address?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: 'inet' | 'inet6' | string; local: string; prefixlen: number; scope?: string }[];
}

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  prefsrc?: string;
  scope?: string;
  protocol?: string;
  type?: string;
  table?: string;
  pref?: string;
  flags?: string[];
  metrics?: ({ mtu?: number } | Record<string, number>)[];
}

const IFF: Record<string, number> = {
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
const IFF_NOARP = 0x80;
const RTNH_F_ONLINK = 0x4;
const SCOPE_NUM: Record<string, number> = { global: 0, universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };
const NUD_NAME: Record<number, string> = { 2: 'reachable', 4: 'stale', 8: 'delay', 16: 'probe', 64: 'noarp', 128: 'permanent' };
const NTF_PROXY = 0x08;
const NTF_ROUTER = 0x80;
const IFNAMSIZ = 15;

function rawFlags(flags: readonly string[]): number {
  return flags.reduce((acc, f) => acc | (IFF[f] ?? 0), 0);
}

/** Canonical text of an address so "fd00:0::1" and "FD00::1" compare equal. */
function canonicalIp(addr: string): string {
  const a = addr.trim();
  if (!a.includes(':')) return a;
  try {
    return new URL(`http://[${a}]/`).hostname.slice(1, -1);
  } catch {
    return a.toLowerCase();
  }
}

function isV6(addr: string): boolean {
  return addr.includes(':');
}

function validName(name: string, what: string): string {
  if (name.length === 0 || name.length > IFNAMSIZ || /[\s/:]/.test(name) || name === '.' || name === '..') {
    throw new AgentError('E_INVALID_ARGUMENT', `${what} "${name}" is not a valid interface name (1-15 characters, no spaces, "/" or ":")`);
  }
  return name;
}

function validAddr(a: IPAddress): { addr: string; prefix: number; v6: boolean } {
  const addr = String(a.address ?? '').trim();
  const v6 = isV6(addr);
  const prefix = Number(a.mask === '' || a.mask === undefined ? (v6 ? 128 : 32) : a.mask);
  if (!/^[0-9a-fA-F:.]+$/.test(addr) || !Number.isInteger(prefix) || prefix < 0 || prefix > (v6 ? 128 : 32)) {
    throw new AgentError('E_INVALID_ARGUMENT', `IP address ${JSON.stringify(a)} is not an address with a decimal prefix length in "mask"`);
  }
  return { addr, prefix, v6 };
}

function validMac(mac: string, what: string): string {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac))
    throw new AgentError('E_INVALID_ARGUMENT', `${what} "${mac}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  return mac.toLowerCase();
}

async function readLinks(ip: Ip): Promise<IpAddrLink[]> {
  return ip.json<IpAddrLink[]>(['-details', 'addr', 'show']);
}

/** Whether IPv6 is off for a link, its sysctls read by `read` (which throws for a file that is not there). */
export async function ipv6DisabledBy(read: (path: string) => Promise<string>, ifname: string): Promise<boolean> {
  for (const p of ['/proc/sys/net/ipv6/conf/all/disable_ipv6', `/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`]) {
    try {
      if ((await read(p)).trim() === '1') return true;
    } catch {
      return true; // no IPv6 in this kernel
    }
  }
  return false;
}

const defaultIpv6Disabled = (ifname: string): Promise<boolean> => ipv6DisabledBy((p) => fsp().readFile(p, 'utf8'), ifname);

/** The netdev name at a PCI path (waiting for it to appear), or undefined without sysfs. */
async function netdevAtPciPath(ctx: NetworkContext, devicePath: string): Promise<string | undefined> {
  if (!ctx.sysfs) return undefined;
  const sysfs = ctx.sysfs;
  return waitFor(`network device at PCI path ${devicePath}`, ctx.deviceTimeoutMs ?? 10_000, async () => {
    const dir = await pciDeviceDir(sysfs, devicePath);
    if (!dir) return undefined;
    const names = await childrenOfKind(dir, 'net');
    return names[0];
  });
}

function linkNotFound(iface: Interface): AgentError {
  return new AgentError(
    'E_LINK_NOT_FOUND',
    `Link not found: no interface with hwAddr "${iface.hwAddr ?? ''}"${iface.devicePath ? `, devicePath "${iface.devicePath}"` : ''} or name "${iface.device || iface.name}"`,
  );
}

/** Which link an Interface designates, and whether its MAC must be set. */
export async function findLink(
  ctx: NetworkContext,
  iface: Interface,
  links: readonly IpAddrLink[],
): Promise<{ link: IpAddrLink; setMac: boolean }> {
  const hw = iface.hwAddr ? validMac(iface.hwAddr, 'hwAddr') : '';
  if (hw) {
    const byMac = links.find((l) => l.link_type !== 'loopback' && (l.address ?? '').toLowerCase() === hw);
    if (byMac) return { link: byMac, setMac: false };
  }
  if (iface.devicePath) {
    const name = await netdevAtPciPath(ctx, iface.devicePath);
    if (name !== undefined) {
      const fresh = name && !links.some((l) => l.ifname === name) ? await readLinks(ctx.ip) : links;
      const link = fresh.find((l) => l.ifname === name);
      if (link) return { link, setMac: !!hw && (link.address ?? '').toLowerCase() !== hw };
    }
  }
  for (const n of [iface.device, iface.name]) {
    if (!n) continue;
    const link = links.find((l) => l.ifname === n);
    if (link) return { link, setMac: !!hw && (link.address ?? '').toLowerCase() !== hw };
  }
  throw linkNotFound(iface);
}

/** The `ip -batch` lines that make `link` look like `iface` (exported for unit tests). */
function interfaceLines(
  iface: Interface,
  link: IpAddrLink,
  links: readonly IpAddrLink[],
  opts: { setMac: boolean; skipV6: boolean },
): string[] {
  const cur = link.ifname;
  const target = iface.name ? validName(iface.name, 'interface name') : cur;
  const lines: string[] = [];
  const conflict = target !== cur ? links.find((l) => l.ifname === target && l.ifindex !== link.ifindex) : undefined;
  const tmp = conflict ? `krtmp${conflict.ifindex}`.slice(0, IFNAMSIZ) : '';
  if (conflict) {
    lines.push(`link set dev ${conflict.ifname} down`, `link set dev ${conflict.ifname} name ${tmp}`);
  }
  lines.push(`link set dev ${cur} down`);
  if (opts.setMac) lines.push(`link set dev ${cur} address ${validMac(iface.hwAddr, 'hwAddr')}`);

  const wanted = (iface.IPAddresses ?? []).map(validAddr).filter((a) => !(a.v6 && opts.skipV6));
  const wantedKeys = new Set(wanted.map((a) => `${canonicalIp(a.addr)}/${a.prefix}`));
  for (const a of link.addr_info ?? []) {
    if (a.family !== 'inet' && a.family !== 'inet6') continue;
    if (a.family === 'inet6' && a.scope === 'link') continue; // kernel-managed link-local
    if (!wantedKeys.has(`${canonicalIp(a.local)}/${a.prefixlen}`)) lines.push(`addr del ${a.local}/${a.prefixlen} dev ${cur}`);
  }
  for (const a of wanted) {
    lines.push(
      a.v6
        ? `addr replace ${a.addr}/${a.prefix} dev ${cur} nodad`
        : `addr replace ${a.addr}/${a.prefix}${a.prefix <= 30 ? ' brd +' : ''} dev ${cur}`,
    );
  }
  const mtu = Number(iface.mtu ?? 0);
  if (!Number.isInteger(mtu) || mtu < 0) throw new AgentError('E_INVALID_ARGUMENT', `mtu ${iface.mtu} is not a non-negative integer`);
  if (mtu > 0 && mtu !== link.mtu) lines.push(`link set dev ${cur} mtu ${mtu}`);
  if (target !== cur) lines.push(`link set dev ${cur} name ${target}`);
  lines.push(`link set dev ${target} arp ${(Number(iface.raw_flags ?? 0) & IFF_NOARP) !== 0 ? 'off' : 'on'}`);
  lines.push(`link set dev ${target} up`);
  if (conflict) {
    lines.push(`link set dev ${tmp} name ${cur}`);
    if (conflict.flags.includes('UP')) lines.push(`link set dev ${cur} up`);
  }
  return lines;
}

export async function updateInterface(ctx: NetworkContext, iface: Interface): Promise<Interface> {
  const name = await applyInterface(ctx, iface);
  const after = await listInterfaces(ctx);
  const result = after.Interfaces.find((i) => i.name === name);
  if (!result) throw linkNotFound(iface);
  return result;
}

/** UpdateInterface without reading the link back (the host's boot, which has no use for it): the link's name. */
export async function applyInterface(ctx: NetworkContext, iface: Interface): Promise<string> {
  if (!iface || typeof iface !== 'object')
    throw new AgentError('E_INVALID_ARGUMENT', 'UpdateInterface needs params.interface (a Kata Interface)');
  if (iface.name) validName(iface.name, 'interface name');
  (iface.IPAddresses ?? []).forEach(validAddr);
  const links = await readLinks(ctx.ip);
  const { link, setMac } = await findLink(ctx, iface, links);
  const wantsV6 = (iface.IPAddresses ?? []).some((a) => isV6(String(a.address ?? '')));
  const skipV6 = wantsV6 ? await (ctx.ipv6Disabled ?? defaultIpv6Disabled)(link.ifname) : false;
  const lines = interfaceLines(iface, link, links, { setMac, skipV6 });
  const outcome = await ctx.ip.batch(lines);
  throwFirstFailure(ctx.ip, lines, outcome);
  return iface.name || link.ifname;
}

function routeFamilyV6(r: Route): boolean {
  return (
    isV6(r.dest ?? '') || isV6(r.gateway ?? '') || isV6(r.source ?? '') || (!(r.dest ?? '') && !(r.gateway ?? '') && Number(r.family) === 1)
  );
}

/** `route replace ...` for one Kata Route. */
function routeLine(r: Route): string {
  const v6 = routeFamilyV6(r);
  const dest = (r.dest ?? '').trim() || (v6 ? '::/0' : '0.0.0.0/0');
  if (!/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(dest))
    throw new AgentError('E_INVALID_ARGUMENT', `route dest "${r.dest}" is not an address or CIDR`);
  const parts = ['route', 'replace', dest];
  if (r.gateway) parts.push('via', r.gateway);
  if (r.device) parts.push('dev', validName(r.device, 'route device'));
  if (r.source) parts.push('src', r.source);
  const scope = Number(r.scope ?? 0);
  if (scope) parts.push('scope', String(scope));
  parts.push('proto', 'boot');
  const mtu = Number(r.mtu ?? 0);
  if (mtu > 0) parts.push('mtu', String(mtu));
  if ((Number(r.flags ?? 0) & RTNH_F_ONLINK) !== 0) parts.push('onlink');
  for (const p of parts)
    if (/\s/.test(p) || p === '') throw new AgentError('E_INVALID_ARGUMENT', `route ${JSON.stringify(r)} has an empty or blank field`);
  return parts.join(' ');
}

/** Routes without a gateway first (they make the gateways reachable), then the rest; order kept within each group. */
function orderRoutes(routes: readonly Route[]): Route[] {
  return [...routes.filter((r) => !r.gateway), ...routes.filter((r) => !!r.gateway)];
}

export async function updateRoutes(ctx: NetworkContext, routes: readonly Route[]): Promise<{ Routes: Route[] }> {
  await applyRoutes(ctx, routes);
  return listRoutes(ctx);
}

/** UpdateRoutes without reading the table back (the host's boot). */
export async function applyRoutes(ctx: NetworkContext, routes: readonly Route[]): Promise<void> {
  if (!Array.isArray(routes))
    throw new AgentError('E_INVALID_ARGUMENT', 'UpdateRoutes needs params.routes.Routes (an array of Kata Routes)');
  const ordered = orderRoutes(routes);
  const lines = ordered.map(routeLine);
  // Without -force: a gateway route is not tried once a route before it failed. EEXIST is ignored
  // (as Kata does): the batch resumes after that line.
  await allOrNothing(ctx.ip, async () => {
    let rest = lines;
    while (rest.length > 0) {
      const outcome = await ctx.ip.batch(rest, { force: false });
      const fail = outcome.findIndex((o) => o !== null);
      if (fail < 0) break;
      if (!/File exists/i.test(outcome[fail]!)) throwFirstFailure(ctx.ip, rest, outcome);
      rest = rest.slice(fail + 1);
    }
  });
}

function neighborLine(n: ARPNeighbor): string {
  const to = n.toIPAddress?.address;
  if (!to || !/^[0-9a-fA-F:.]+$/.test(to))
    throw new AgentError('E_INVALID_ARGUMENT', `ARP neighbor ${JSON.stringify(n)} lacks toIPAddress.address`);
  const dev = validName(n.device ?? '', 'neighbor device');
  const flags = Number(n.flags ?? 0);
  const parts = ['neigh', 'replace'];
  if ((flags & NTF_PROXY) !== 0) {
    parts.push('proxy', to, 'dev', dev);
    return parts.join(' ');
  }
  parts.push(to);
  if (n.lladdr) parts.push('lladdr', validMac(n.lladdr, 'lladdr'));
  parts.push('dev', dev, 'nud', NUD_NAME[Number(n.state ?? 0)] ?? 'permanent');
  if ((flags & NTF_ROUTER) !== 0) parts.push('router');
  return parts.join(' ');
}

export async function addArpNeighbors(ctx: NetworkContext, neighbors: readonly ARPNeighbor[]): Promise<Record<string, never>> {
  if (!Array.isArray(neighbors))
    throw new AgentError('E_INVALID_ARGUMENT', 'AddARPNeighbors needs params.neighbors.ARPNeighbors (an array)');
  const lines = neighbors.map(neighborLine);
  const outcome = await ctx.ip.batch(lines, { force: true });
  throwFirstFailure(ctx.ip, lines, outcome);
  return {};
}

export async function listInterfaces(ctx: NetworkContext): Promise<{ Interfaces: Interface[] }> {
  const links = await readLinks(ctx.ip);
  const out: Interface[] = [];
  for (const l of links) {
    const devicePath = ctx.sysfs ? await pciPathOf(join(ctx.sysfs, 'class', 'net', l.ifname, 'device')) : '';
    out.push({
      device: l.ifname,
      name: l.ifname,
      IPAddresses: (l.addr_info ?? [])
        .filter((a) => a.family === 'inet' || a.family === 'inet6')
        .map((a) => ({ family: a.family === 'inet6' ? 1 : 0, address: a.local, mask: String(a.prefixlen) })),
      mtu: l.mtu,
      hwAddr: l.address ?? '',
      devicePath,
      type: l.linkinfo?.info_kind ?? l.link_type ?? '',
      raw_flags: rawFlags(l.flags ?? []),
    });
  }
  return { Interfaces: out };
}

function toRoute(r: IpRoute, v6: boolean): Route {
  let dest = r.dst === 'default' ? '' : r.dst;
  if (dest && !dest.includes('/')) dest = `${dest}/${v6 ? 128 : 32}`;
  const mtu = (r.metrics ?? []).map((m) => (m as { mtu?: number }).mtu).find((x) => typeof x === 'number') ?? 0;
  return {
    dest,
    gateway: r.gateway ?? '',
    device: r.dev ?? '',
    source: r.prefsrc ?? '',
    scope: SCOPE_NUM[r.scope ?? 'global'] ?? Number(r.scope ?? 0),
    family: v6 ? 1 : 0,
    flags: (r.flags ?? []).includes('onlink') ? RTNH_F_ONLINK : 0,
    mtu,
  };
}

/** IPv6 routes carry RTA_PREF (printed as "pref") and IPv4 ones never do; addresses settle the rest. */
function isV6Route(r: IpRoute): boolean {
  return r.pref !== undefined || isV6(r.dst ?? '') || isV6(r.gateway ?? '') || isV6(r.prefsrc ?? '');
}

export async function listRoutes(ctx: NetworkContext): Promise<{ Routes: Route[] }> {
  // One read for both families (the kernel dumps IPv4 before IPv6); -details prints each route's table.
  const all = await ctx.ip.json<IpRoute[]>(['-details', 'route', 'show', 'table', 'all']);
  const main = all.filter((r) => r.table === 'main' && (r.type === undefined || r.type === 'unicast'));
  return {
    Routes: [...main.filter((r) => !isV6Route(r)).map((r) => toRoute(r, false)), ...main.filter(isV6Route).map((r) => toRoute(r, true))],
  };
}
