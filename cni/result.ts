import { statSync } from 'node:fs';
import { atLeast } from './version.js';

/**
 * CNI ADD results (spec section 5) in one internal shape, the 1.1.0 superset, and conversion to the
 * shape of each version: 0.3.x/0.4.0 carry `ips[].version` and no MTU; 1.0.0 dropped `version`;
 * 1.1.0 added `interfaces[].mtu/socketPath/pciID` and `routes[].mtu/advmss/priority/table/scope`.
 */
interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

interface CniIPConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

interface CniDNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: CniRoute[];
  dns?: CniDNS;
}

/** A result of any supported version (already checked against the schema) in the internal shape. */
export function normalizeResult(raw: Record<string, unknown>): CniResult {
  const r = raw as {
    cniVersion?: string;
    interfaces?: CniInterface[];
    ips?: (CniIPConfig & { version?: string })[];
    routes?: CniRoute[];
    dns?: CniDNS;
  };
  const out: CniResult = { cniVersion: typeof r.cniVersion === 'string' ? r.cniVersion : '' };
  if (r.interfaces) out.interfaces = r.interfaces.map((i) => pick(i, ['name', 'mac', 'mtu', 'sandbox', 'socketPath', 'pciID']));
  if (r.ips) out.ips = r.ips.map((ip) => pick(ip, ['address', 'gateway', 'interface']));
  if (r.routes) out.routes = r.routes.map((rt) => pick(rt, ['dst', 'gw', 'mtu', 'advmss', 'priority', 'table', 'scope']));
  if (r.dns) out.dns = pick(r.dns, ['nameservers', 'domain', 'search', 'options']);
  return out;
}

/** The result as version `v` prints it (key order as the reference Go types). */
export function formatResult(r: CniResult, v: string): Record<string, unknown> {
  const v11 = atLeast(v, '1.1.0');
  const v10 = atLeast(v, '1.0.0');
  const out: Record<string, unknown> = { cniVersion: v };
  if (r.interfaces) {
    out.interfaces = r.interfaces.map((i) =>
      pick(i, v11 ? ['name', 'mac', 'mtu', 'sandbox', 'socketPath', 'pciID'] : ['name', 'mac', 'sandbox']),
    );
  }
  if (r.ips) {
    out.ips = r.ips.map((ip) => {
      const base = pick(ip, ['interface', 'address', 'gateway']);
      return v10 ? base : { version: ip.address.includes(':') ? '6' : '4', ...base };
    });
  }
  if (r.routes)
    out.routes = r.routes.map((rt) => pick(rt, v11 ? ['dst', 'gw', 'mtu', 'advmss', 'priority', 'table', 'scope'] : ['dst', 'gw']));
  if (r.dns) out.dns = r.dns;
  return out;
}

function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/**
 * Two netns paths name the same namespace: equal once /var/run is folded to /run, or same nsfs inode.
 * A sandbox that is not an absolute path (e.g. a VM id) names no namespace.
 */
export function sameNetns(a: string | undefined, b: string): boolean {
  if (a === undefined || !a.startsWith('/') || !b.startsWith('/')) return false;
  const norm = (p: string) => p.replace(/^\/var\/run\//, '/run/');
  if (norm(a) === norm(b)) return true;
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}

/** Index of the interface `ifname` whose sandbox is `netns`, or -1. */
export function findSandboxInterface(r: CniResult, ifname: string, netns: string): number {
  return (r.interfaces ?? []).findIndex((i) => i.name === ifname && sameNetns(i.sandbox, netns));
}
