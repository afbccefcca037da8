import { IPFamily, NUD, type ARPNeighbor, type IPAddress, type Route } from '../../host/agent-types.js';
import { KataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import type { PluginContext } from '../../host/plugin.js';
import { readLinks } from './link-info.js';
import { classifyLink, type ClassifyOptions } from './detect.js';
import { findPreattached } from './preattached.js';
import type { ScannedEndpoint, ScannedLink, ScanResult } from './types.js';

/**
 * Scan of a network namespace into the Kata agent's descriptors (Interface, Route, ARPNeighbor),
 * following the Go runtime's rules (scanEndpointsInNs / generateVCNetworkStructures):
 *
 * - links: skip loopback, links without a non-loopback address, and our own `*_kata` devices;
 *   IPv6 link-local addresses are kept; `type` is the Kata endpoint type, not the netlink kind;
 * - routes: main table, unicast, not installed by the kernel (proto kernel), of a kept link,
 *   with the route's MTU (kata#11232);
 * - neighbours: of a kept link, with a link-layer address; PERMANENT ones, plus the neighbour
 *   entry of a default-route gateway while it is REACHABLE, STALE or DELAY (kata#11704).
 *
 * Four reads and no writes: links+addresses (`ip -details addr show`, one spawn), IPv4 and IPv6
 * routes and the neighbour table (through ctx.netlink, so a long-lived process reads them from
 * its coprocess without spawning); plus, only when the namespace holds taps, their ingress filters:
 * a tap a chained CNI plugin (kata-cni) already joined to a link marks that link's endpoint as
 * preattached (preattached.ts).
 */

/** A link the scan leaves out, and why (a debug line; a warning for an unsupported kind). */
export interface SkippedLink {
  name: string;
  reason: 'loopback' | 'ours' | 'no-address' | 'unsupported-kind';
  detail?: string;
}

const IFF_LOOPBACK = 0x8;

/** rt_scope_t values (linux/rtnetlink.h). */
const ROUTE_SCOPE: Readonly<Record<string, number>> = { universe: 0, global: 0, site: 200, link: 253, host: 254, nowhere: 255 };

/** Next-hop flags as iproute2 names them (RTNH_F_*, linux/rtnetlink.h). */
const ROUTE_FLAG: Readonly<Record<string, number>> = {
  dead: 0x1,
  pervasive: 0x2,
  onlink: 0x4,
  offload: 0x8,
  linkdown: 0x10,
  unresolved: 0x20,
  trap: 0x40,
  rt_offload_failed: 0x80,
};

/**
 * Flags the guest can be asked to set. The kernel refuses a route add carrying DEAD or LINKDOWN
 * ("Invalid rtm_flags"), and offload/trap state belongs to the host's hardware, so only ONLINK
 * (a gateway outside every on-link prefix, as ptp/Calico-style `via 169.254.1.1 onlink`) is copied.
 */
const GUEST_ROUTE_FLAGS = ROUTE_FLAG.onlink!;

/** Neighbour flags as iproute2 prints them (keys with a null value), NTF_* (linux/neighbour.h). */
const NEIGH_FLAG: Readonly<Record<string, number>> = { proxy: 0x08, extern_learn: 0x10, router: 0x80 };

/** Neighbour states (NUD_*) by the names iproute2 prints. */
const NUD_BY_NAME: Readonly<Record<string, number>> = NUD;

/** Default-gateway neighbour states worth preseeding in the guest (the state goes across as reported). */
const GATEWAY_NEIGH_STATES = NUD.REACHABLE | NUD.STALE | NUD.DELAY;

interface RawRoute {
  type?: string;
  dst?: string;
  gateway?: string;
  dev?: string;
  prefsrc?: string;
  protocol?: string;
  scope?: string | number;
  table?: string;
  flags?: string[];
  metrics?: Record<string, unknown>[];
  nexthops?: unknown[];
  via?: unknown;
}

interface RawNeighbour {
  dst?: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
  [flag: string]: unknown;
}

function familyOf(address: string): IPFamily {
  return address.includes(':') ? IPFamily.v6 : IPFamily.v4;
}

function asArray(json: unknown, what: string): unknown[] {
  if (!Array.isArray(json)) throw new KataError('E_INTERNAL', `${what}: expected a JSON array from ip, got ${typeof json}`);
  return json;
}

function scopeNumber(scope: string | number | undefined): number {
  if (scope === undefined) return 0;
  if (typeof scope === 'number') return scope;
  const known = ROUTE_SCOPE[scope];
  if (known !== undefined) return known;
  const n = Number(scope); // iproute2 prints unnamed scopes as numbers
  return Number.isInteger(n) ? n : 0;
}

function routeMtu(metrics: Record<string, unknown>[] | undefined): number {
  for (const m of metrics ?? []) {
    const v = m.mtu;
    if (typeof v === 'number') return v;
    // A locked metric may be printed as ["lock", N] by some iproute2 versions.
    if (Array.isArray(v)) {
      const n = v.find((x) => typeof x === 'number');
      if (typeof n === 'number') return n;
    }
  }
  return 0;
}

/** "10.1.0.1" -> "10.1.0.1/32"; CIDR kept; "default" -> "". */
function routeDest(dst: string | undefined, family: IPFamily): string {
  if (dst === undefined || dst === 'default') return '';
  return dst.includes('/') ? dst : `${dst}/${family === IPFamily.v6 ? 128 : 32}`;
}

/**
 * `ip -json route show` output (one family) -> the routes to send to the guest. Keeps main-table
 * unicast routes through one of `devices`, drops routes the kernel installed itself (connected
 * prefixes, fe80::/64: the guest's kernel makes its own), multipath routes (no single device) and
 * routes through a gateway of the other family.
 */
export function parseRoutes(json: unknown, family: IPFamily, devices: ReadonlySet<string>): Route[] {
  const out: Route[] = [];
  for (const item of asArray(json, 'route list')) {
    const r = item as RawRoute;
    if (r.table !== undefined && r.table !== 'main' && r.table !== '254') continue;
    if (r.type !== undefined && r.type !== 'unicast') continue;
    if (r.protocol === 'kernel') continue;
    if (r.dev === undefined || !devices.has(r.dev) || r.nexthops !== undefined) continue;
    // A gateway of the other family (`via inet6 fe80::1` on an IPv4 route) has no agent form.
    if (r.via !== undefined) continue;
    let flags = 0;
    for (const f of r.flags ?? []) flags |= ROUTE_FLAG[f] ?? 0;
    out.push({
      dest: routeDest(r.dst, family),
      gateway: r.gateway ?? '',
      device: r.dev,
      source: r.prefsrc ?? '',
      scope: scopeNumber(r.scope),
      family,
      flags: flags & GUEST_ROUTE_FLAGS,
      mtu: routeMtu(r.metrics),
    });
  }
  return out;
}

function stateBits(states: readonly string[] | undefined): number {
  let s = 0;
  for (const name of states ?? []) s |= NUD_BY_NAME[name] ?? 0;
  return s;
}

/**
 * `ip -json neigh show` output -> the neighbours to preseed in the guest: entries of `devices`
 * with a link-layer address that are PERMANENT, or that belong to a default-route gateway on the
 * same device (`routes`) and are REACHABLE, STALE or DELAY.
 */
export function parseNeighbours(json: unknown, devices: ReadonlySet<string>, routes: readonly Route[]): ARPNeighbor[] {
  const gateways = new Set(routes.filter((r) => r.dest === '' && r.gateway !== '').map((r) => `${r.device}\0${r.gateway}`));
  const out: ARPNeighbor[] = [];
  for (const item of asArray(json, 'neighbour list')) {
    const n = item as RawNeighbour;
    if (n.dst === undefined || n.dev === undefined || !devices.has(n.dev)) continue;
    if (typeof n.lladdr !== 'string' || n.lladdr === '') continue;
    const state = stateBits(n.state);
    const keep = (state & NUD.PERMANENT) !== 0 || ((state & GATEWAY_NEIGH_STATES) !== 0 && gateways.has(`${n.dev}\0${n.dst}`));
    if (!keep) continue;
    let flags = 0;
    for (const [name, bit] of Object.entries(NEIGH_FLAG)) if (name in n) flags |= bit;
    const family = familyOf(n.dst);
    out.push({
      toIPAddress: { family, address: n.dst, mask: family === IPFamily.v6 ? '128' : '32' },
      device: n.dev,
      lladdr: n.lladdr,
      state,
      flags,
    });
  }
  return out;
}

function isLoopbackAddress(a: IPAddress): boolean {
  return a.family === IPFamily.v4 ? a.address.startsWith('127.') : a.address === '::1';
}

/**
 * Scanned links -> the links that become endpoints (with loopback addresses dropped) and their
 * endpoint types, sorted by name (as Kata sorts endpoints), plus the links left out and why.
 */
export function selectEndpoints(
  links: readonly ScannedLink[],
  opts: ClassifyOptions = {},
): { endpoints: ScannedEndpoint[]; skipped: SkippedLink[] } {
  const endpoints: ScannedEndpoint[] = [];
  const skipped: SkippedLink[] = [];
  for (const link of [...links].sort((a, b) => cmp(a.name, b.name))) {
    if (link.name === 'lo' || (link.rawFlags & IFF_LOOPBACK) !== 0) {
      skipped.push({ name: link.name, reason: 'loopback' });
      continue;
    }
    if (link.name.endsWith('_kata')) {
      skipped.push({ name: link.name, reason: 'ours' });
      continue;
    }
    const addresses = link.addresses.filter((a) => !isLoopbackAddress(a));
    if (addresses.length === 0) {
      skipped.push({ name: link.name, reason: 'no-address' });
      continue;
    }
    const kept: ScannedLink = { ...link, addresses };
    const type = classifyLink(kept, opts);
    if (typeof type !== 'string') {
      skipped.push({ name: link.name, reason: 'unsupported-kind', detail: type.unsupported || 'device' });
      continue;
    }
    endpoints.push({ link: kept, type });
  }
  return { endpoints, skipped };
}

function cmp(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Deterministic order: by device, family, then destination (default first), gateway, source. */
function sortRoutes(routes: Route[]): Route[] {
  return routes.sort(
    (a, b) => cmp(a.device, b.device) || a.family - b.family || cmp(a.dest, b.dest) || cmp(a.gateway, b.gateway) || cmp(a.source, b.source),
  );
}

function sortNeighbours(neighbours: ARPNeighbor[]): ARPNeighbor[] {
  return neighbours.sort(
    (a, b) => cmp(a.device, b.device) || a.toIPAddress.family - b.toIPAddress.family || cmp(a.toIPAddress.address, b.toIPAddress.address),
  );
}

function logSkipped(log: Logger, skipped: readonly SkippedLink[]): void {
  for (const s of skipped) {
    if (s.reason === 'unsupported-kind') {
      log.warn(
        { link: s.name, kind: s.detail },
        `scan: link ${s.name} of kind "${s.detail}" has no Kata endpoint type; it is not passed to the guest`,
      );
    } else {
      log.debug({ link: s.name, reason: s.reason }, `scan: link ${s.name} skipped (${s.reason})`);
    }
  }
}

/** Scan ctx.netns into endpoints-to-be (links and their endpoint types), routes and neighbours. */
export async function scanNetns(ctx: PluginContext, opts: ClassifyOptions = {}): Promise<ScanResult> {
  // Routes are read per family: without a family, "default dev X" (no gateway) would be ambiguous.
  // `table all root <family>/0` selects the family without the -4/-6 option (which a batch line cannot carry).
  const [links, v4, v6, neigh] = await Promise.all([
    readLinks(ctx),
    ctx.netlink.json('ip', ctx.netns, ['route', 'show', 'table', 'all', 'root', '0.0.0.0/0']),
    ctx.netlink.json('ip', ctx.netns, ['route', 'show', 'table', 'all', 'root', '::/0']),
    ctx.netlink.json('ip', ctx.netns, ['neigh', 'show']),
  ]);
  const built = selectEndpoints(links, opts);
  logSkipped(ctx.log, built.skipped);
  const devices = new Set(built.endpoints.map((e) => e.link.name));
  const pre = await findPreattached(ctx, links, [...devices]);
  const endpoints = built.endpoints.map((e) => {
    const p = pre.get(e.link.name);
    return p ? { ...e, preattached: p } : e;
  });
  const routes = sortRoutes([...parseRoutes(v4, IPFamily.v4, devices), ...parseRoutes(v6, IPFamily.v6, devices)]);
  const neighbors = sortNeighbours(parseNeighbours(neigh, devices, routes));
  return { endpoints, routes, neighbors };
}
