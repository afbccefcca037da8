/**
 * UpdateRoutes applies all of its routes or none: the main table is read before, and when a line
 * fails what the earlier lines changed is put back (red-team D16: a failing gateway route left the
 * routes before it applied). A route is identified as `ip route replace` matches it: family,
 * destination and metric; one added is deleted, one replaced is replaced back from its old fields.
 */
import { throwFirstFailure, type Ip } from './ip.js';
import { AgentError } from './protocol.js';

/** One entry of `ip -json -details route show` (the fields a route is rebuilt from). */
interface ShownRoute {
  type?: string;
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  table?: string;
  pref?: string;
  flags?: string[];
  metrics?: Record<string, number>[];
  nexthops?: unknown[];
}

/** The main table's unicast routes by their replace key, each with the line that recreates it. */
type RouteTable = Map<string, { key: string; line: string }>;

const isV6 = (r: ShownRoute): boolean => r.pref !== undefined || [r.dst, r.gateway, r.prefsrc].some((a) => a?.includes(':'));

function dest(r: ShownRoute): string {
  if (r.dst === 'default') return isV6(r) ? '::/0' : '0.0.0.0/0';
  return r.dst.includes('/') ? r.dst : `${r.dst}/${isV6(r) ? 128 : 32}`;
}

/** `route replace` for a route as the kernel shows it (multipath routes are left alone: null). */
function recreate(r: ShownRoute, key: string): string | null {
  if (r.nexthops) return null;
  const p = [`route replace ${key}`];
  if (r.gateway) p.push(`via ${r.gateway}`);
  if (r.dev) p.push(`dev ${r.dev}`);
  if (r.prefsrc) p.push(`src ${r.prefsrc}`);
  if (r.scope) p.push(`scope ${r.scope}`);
  if (r.protocol) p.push(`proto ${r.protocol}`);
  const mtu = (r.metrics ?? []).map((m) => m.mtu).find((x) => typeof x === 'number');
  if (mtu) p.push(`mtu ${mtu}`);
  if ((r.flags ?? []).includes('onlink')) p.push('onlink');
  return p.join(' ');
}

async function readRouteTable(ip: Ip): Promise<RouteTable> {
  const all = await ip.json<ShownRoute[]>(['-details', 'route', 'show', 'table', 'all']);
  const out: RouteTable = new Map();
  for (const r of all) {
    if (r.table !== 'main' || (r.type !== undefined && r.type !== 'unicast')) continue;
    const key = `${dest(r)} metric ${r.metric ?? 0}`;
    const line = recreate(r, key);
    if (line) out.set(key, { key, line });
  }
  return out;
}

/** The lines that turn `now` back into `before`: new routes deleted, changed or removed ones recreated. */
function restoreLines(before: RouteTable, now: RouteTable): string[] {
  const lines: string[] = [];
  for (const key of now.keys()) if (!before.has(key)) lines.push(`route del ${key}`);
  const back = [...before.values()].filter((r) => now.get(r.key)?.line !== r.line).map((r) => r.line);
  // Routes without a gateway first: they make the gateways of the others reachable.
  return [...lines, ...back.filter((l) => !l.includes(' via ')), ...back.filter((l) => l.includes(' via '))];
}

/** Run `apply` (route changes); when it fails with an agent error, the routes are put back as they were. */
export async function allOrNothing(ip: Ip, apply: () => Promise<void>): Promise<void> {
  const before = await readRouteTable(ip);
  try {
    await apply();
  } catch (e) {
    if (!(e instanceof AgentError)) throw e;
    try {
      const undo = restoreLines(before, await readRouteTable(ip));
      throwFirstFailure(ip, undo, await ip.batch(undo, { force: true }));
    } catch (r) {
      throw new AgentError(e.code, `${e.message}; rolling the other routes back failed too: ${(r as Error).message}`);
    }
    throw new AgentError(e.code, `${e.message}; no route was changed (the others were rolled back)`);
  }
}
