import { run } from '../../../host/exec.js';
import type { NetnsRef } from '../../../host/netns.js';

/** What kata-cni's tcfilter attachment looks like in a namespace, read with ip/tc. */
export interface RedirectState {
  tap?: {
    kind: string | undefined;
    mode: unknown;
    mtu: number;
    mac: string;
    up: boolean;
    owner?: unknown;
    group?: unknown;
    multiQueue?: unknown;
  };
  link?: { mtu: number; mac: string };
  ingress: string[];
  /** "dev>target" for every mirred egress redirect under ingress. */
  redirects: string[];
}

interface LinkJson {
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}
interface QdiscJson {
  kind?: string;
  dev?: string;
}
interface FilterJson {
  options?: { actions?: { kind?: string; mirred_action?: string; direction?: string; to_dev?: string }[] };
}

function nsArgs(ns: NetnsRef): string[] {
  return ns.name ? ['-n', ns.name] : [];
}

async function inNs(ns: NetnsRef, tool: 'ip' | 'tc', args: string[]): Promise<string> {
  if (ns.name) return (await run(tool, [...nsArgs(ns), ...args])).stdout;
  return (await run('nsenter', [`--net=${ns.path}`, tool, ...args])).stdout;
}

export async function redirectState(ns: NetnsRef, ifname: string, tapName: string): Promise<RedirectState> {
  const links = JSON.parse(await inNs(ns, 'ip', ['-j', '-d', 'link', 'show'])) as LinkJson[];
  const st: RedirectState = { ingress: [], redirects: [] };
  const tap = links.find((l) => l.ifname === tapName);
  if (tap) {
    const d = tap.linkinfo?.info_data ?? {};
    st.tap = {
      kind: tap.linkinfo?.info_kind,
      mode: d.type,
      mtu: tap.mtu,
      mac: tap.address,
      up: tap.flags.includes('UP'),
      owner: d.user,
      group: d.group,
      multiQueue: d.multi_queue,
    };
  }
  const link = links.find((l) => l.ifname === ifname);
  if (link) st.link = { mtu: link.mtu, mac: link.address };
  const qd = JSON.parse((await inNs(ns, 'tc', ['-j', 'qdisc', 'show'])).trim() || '[]') as QdiscJson[];
  st.ingress = qd
    .filter((q) => q.kind === 'ingress' && (q.dev === ifname || q.dev === tapName))
    .map((q) => q.dev!)
    .sort();
  for (const dev of [ifname, tapName]) {
    if (!links.some((l) => l.ifname === dev)) continue;
    let text = '';
    try {
      text = await inNs(ns, 'tc', ['-j', 'filter', 'show', 'dev', dev, 'parent', 'ffff:']);
    } catch {
      continue;
    }
    for (const f of JSON.parse(text.trim() || '[]') as FilterJson[]) {
      for (const a of f.options?.actions ?? []) {
        if (a.kind === 'mirred' && a.mirred_action === 'redirect' && a.direction === 'egress') st.redirects.push(`${dev}>${a.to_dev}`);
      }
    }
  }
  st.redirects.sort();
  return st;
}

/** Link names in a namespace (path or name). */
export async function namesIn(ns: NetnsRef): Promise<string[]> {
  return (JSON.parse(await inNs(ns, 'ip', ['-j', 'link', 'show'])) as LinkJson[]).map((l) => l.ifname).sort();
}

/** Every ingress qdisc in a namespace, as dev names. */
export async function ingressDevs(ns: NetnsRef): Promise<string[]> {
  return (JSON.parse((await inNs(ns, 'tc', ['-j', 'qdisc', 'show'])).trim() || '[]') as QdiscJson[])
    .filter((q) => q.kind === 'ingress')
    .map((q) => q.dev!)
    .sort();
}
