import { chown, mkdir, rm } from 'node:fs/promises';
import { readdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IPFamily, type IPAddress } from '../../../host/agent-types.js';
import { KataError, isKataError } from '../../../host/errors.js';
import { run } from '../../../host/exec.js';
import { validateIfName } from '../../../host/names.js';
import { netnsLabel } from '../../../host/netns.js';
import { checkpoint, type PluginContext } from '../../../host/plugin.js';
import type { UndoStack } from '../../../host/undo.js';
import { linkNotFound } from '../link-info.js';
import { randomPrivateMac, scratchIfName } from '../names.js';
import { runSteps, scratchUndo, teardownLines, type Step } from '../line-batch.js';
import type { EndpointResources } from '../resources.js';
import type { ScannedLink } from '../types.js';

/**
 * The macvtap internetworking model (Kata's `tapNetworkPair`): a macvtap `tap<idx>_kata` on the pod
 * link in bridge mode, with the link's MTU and txqlen. MAC swap as Kata does: the link gets a random
 * locally administered MAC and the macvtap the link's original MAC (which the guest uses). The link's
 * addresses are saved and deleted (they would answer ARP for the guest); detach restores the MAC,
 * the addresses and the routes that went with them.
 *
 * The VMM opens the macvtap through a private character-device node made from the major:minor that
 * the namespace's own sysfs shows: `/dev/tap<ifindex>` is global while ifindexes are per namespace,
 * so two sandboxes' macvtaps collide there (perf-baselines §3).
 */

/** dev_t as Node's stat gives it, split as glibc's major()/minor(). */
export function splitDevNumber(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return { major, minor };
}

export function macvtapNodeName(ifname: string, index: number): string {
  return `macvtap-${index}-${ifname}`;
}

const FIND_ARGS = (dir: string): string[] => [dir, '-mindepth', '2', '-maxdepth', '2', '-name', 'dev', '-print', '-exec', 'cat', '{}', ';'];

/**
 * major:minor of a macvtap's character device, read from the sysfs of the macvtap's own namespace
 * (`/sys/class/net/IF/macvtap/tapN/dev`). A sysfs mount shows the net devices of the namespace that
 * mounted it, so the read runs where /sys is remounted for the namespace: `ip netns exec NAME` (one
 * spawn) for a named namespace; for a namespace known only by path, nsenter + unshare -m with a
 * fixed script that mounts sysfs (the directory is passed as an argument, never in the script).
 */
async function readMacvtapDevNumber(
  ctx: Pick<PluginContext, 'netns' | 'sysfs'>,
  ifname: string,
): Promise<{ major: number; minor: number; tapIndex: number }> {
  validateIfName(ifname);
  const dir = `/sys/class/net/${ifname}/macvtap`;
  let out: string;
  if (ctx.netns === undefined) {
    const base = ctx.sysfs.path('class/net', ifname, 'macvtap');
    let entries: string[];
    try {
      entries = await readdir(base);
    } catch (e) {
      throw linkNotFound(ifname, undefined, e);
    }
    const tap = entries.find((x) => /^tap\d+$/.test(x));
    if (!tap) throw new KataError('E_SYSFS', `${base} has no tapN entry: is ${ifname} a macvtap?`, { link: ifname });
    out = `${base}/${tap}/dev\n${await ctx.sysfs.read('class/net', ifname, 'macvtap', tap, 'dev')}\n`;
  } else {
    const [file, args] =
      ctx.netns.name !== undefined
        ? ['ip', ['netns', 'exec', ctx.netns.name, 'find', ...FIND_ARGS(dir)]]
        : [
            'nsenter',
            [
              `--net=${ctx.netns.path}`,
              'unshare',
              '--mount',
              '--propagation',
              'private',
              'sh',
              '-c',
              'mount -t sysfs sysfs /sys && exec find "$1" -mindepth 2 -maxdepth 2 -name dev -print -exec cat {} \\;',
              'sh',
              dir,
            ],
          ];
    const r = await run(file, args as string[], { reject: false });
    if (r.exitCode !== 0 || r.stdout.trim() === '') {
      if (/No such file/i.test(r.stderr) || r.stdout.trim() === '') {
        throw linkNotFound(ifname, ctx.netns, new Error(r.stderr.trim()));
      }
      if (/Cannot open network namespace|No such file or directory.*netns/i.test(r.stderr)) {
        throw new KataError('E_NETNS_NOT_FOUND', `network namespace ${netnsLabel(ctx.netns)} does not exist`, { netns: ctx.netns.path });
      }
      throw new KataError('E_SYSFS', `cannot read ${dir}/tapN/dev in network namespace ${netnsLabel(ctx.netns)}: ${r.stderr.trim()}`, {
        link: ifname,
      });
    }
    out = r.stdout;
  }
  const lines = out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const pathLine = lines.findIndex((l) => /\/tap\d+\/dev$/.test(l));
  const m = pathLine >= 0 ? /^(\d+):(\d+)$/.exec(lines[pathLine + 1] ?? '') : null;
  const idx = pathLine >= 0 ? /\/tap(\d+)\/dev$/.exec(lines[pathLine]!) : null;
  if (!m || !idx) throw new KataError('E_SYSFS', `unexpected content of ${dir}/tapN/dev: ${JSON.stringify(out)}`, { link: ifname });
  return { major: Number(m[1]), minor: Number(m[2]), tapIndex: Number(idx[1]) };
}

export async function removeNode(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** A private device node (mode 600, under runDir) for the macvtap `ifname` of ctx.netns. */
export async function makeMacvtapNode(
  ctx: PluginContext,
  ifname: string,
  path: string,
  owner: { uid?: number | undefined; gid?: number | undefined },
  undo: UndoStack,
): Promise<{ path: string; major: number; minor: number; tapIndex: number }> {
  await checkpoint(ctx, 'macvtap:read-dev-number');
  const n = await readMacvtapDevNumber(ctx, ifname);
  await checkpoint(ctx, 'macvtap:mknod');
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await rm(path, { force: true }); // a stale node of a crashed run in our own runDir
  await run('mknod', ['-m', '600', path, 'c', String(n.major), String(n.minor)]);
  undo.push(`mknod ${path}`, () => removeNode(path));
  if (owner.uid !== undefined || owner.gid !== undefined) await chown(path, owner.uid ?? -1, owner.gid ?? -1);
  return { path, ...n };
}

interface AddrInfoJson {
  family?: string;
  local?: string;
  prefixlen?: number;
  address?: string;
  broadcast?: string;
  scope?: string;
  label?: string;
  dynamic?: boolean;
  secondary?: boolean;
  nodad?: boolean;
  noprefixroute?: boolean;
}
interface RouteJson {
  type?: string;
  dst?: string;
  gateway?: string;
  table?: string;
  protocol?: string;
  metric?: number;
  scope?: string;
  prefsrc?: string;
  flags?: string[];
  metrics?: { mtu?: number }[];
  pref?: string;
  nexthops?: unknown[];
}

const SCOPES = new Set(['global', 'link', 'host', 'site']);

/** The link's addresses now, with the `addr add` line restoring each exactly (broadcast, scope, label, peer). */
async function readAddresses(ctx: PluginContext, link: string): Promise<{ addr: IPAddress; restore: string; del: string }[]> {
  let out: { addr_info?: AddrInfoJson[] }[];
  try {
    out = await ctx.netlink.json('ip', ctx.netns, ['addr', 'show', 'dev', link]);
  } catch (e) {
    if (isKataError(e, 'E_LINK_NOT_FOUND')) throw linkNotFound(link, ctx.netns, e);
    throw e;
  }
  const res: { addr: IPAddress; restore: string; del: string }[] = [];
  for (const a of out[0]?.addr_info ?? []) {
    if ((a.family !== 'inet' && a.family !== 'inet6') || !a.local || a.prefixlen === undefined) continue;
    const c = `${a.local}${a.address && a.address !== a.local ? ` peer ${a.address}` : ''}/${a.prefixlen}`;
    const parts = [`addr add ${c}`];
    if (a.broadcast) parts.push(`brd ${a.broadcast}`);
    if (a.scope && SCOPES.has(a.scope) && a.scope !== 'global') parts.push(`scope ${a.scope}`);
    if (a.nodad) parts.push('nodad');
    if (a.noprefixroute) parts.push('noprefixroute');
    if (a.family === 'inet' && a.label && a.label !== link && /^[A-Za-z0-9_.:@+-]+$/.test(a.label)) parts.push(`label ${a.label}`);
    parts.push(`dev ${link}`);
    res.push({
      addr: { family: a.family === 'inet' ? IPFamily.v4 : IPFamily.v6, address: a.local, mask: String(a.prefixlen) },
      restore: parts.join(' '),
      del: `addr del ${a.local}/${a.prefixlen} dev ${link}`,
    });
  }
  return res;
}

const SAFE_TOKEN = /^[A-Za-z0-9_.:/-]+$/;

/**
 * Routes through the link that deleting its addresses removes and the kernel does not bring back
 * (not proto kernel/ra, unicast, not the local table), as `route add` lines.
 */
async function readRestorableRoutes(ctx: PluginContext, link: string): Promise<string[]> {
  const routes = await ctx.netlink.json<RouteJson[]>('ip', ctx.netns, ['route', 'show', 'table', 'all', 'dev', link]);
  const lines: string[] = [];
  for (const r of routes) {
    if (r.type && r.type !== 'unicast') continue;
    if (r.protocol === 'kernel' || r.protocol === 'ra') continue;
    if (r.table === 'local' || r.nexthops || !r.dst) continue;
    const v6 = r.pref !== undefined || r.dst.includes(':') || (r.gateway ?? '').includes(':');
    const dst = r.dst === 'default' ? (v6 ? '::/0' : '0.0.0.0/0') : r.dst;
    const parts = ['route add', dst];
    if (r.gateway) parts.push('via', r.gateway);
    parts.push('dev', link);
    if (r.table && r.table !== 'main') parts.push('table', r.table);
    if (r.protocol) parts.push('proto', r.protocol);
    if (r.metric !== undefined) parts.push('metric', String(r.metric));
    if (r.scope && r.scope !== 'global') parts.push('scope', r.scope);
    if (r.prefsrc) parts.push('src', r.prefsrc);
    const mtu = r.metrics?.find((m) => m.mtu !== undefined)?.mtu;
    if (mtu !== undefined) parts.push('mtu', String(mtu));
    if (r.flags?.includes('onlink')) parts.push('onlink');
    if (parts.every((p) => p === 'route add' || SAFE_TOKEN.test(p))) lines.push(parts.join(' '));
    else ctx.log.warn({ route: r }, 'route not restorable; skipped');
  }
  return lines;
}

export interface MacvtapModelParams {
  link: ScannedLink;
  tap: string;
  queues: number;
  uid?: number | undefined;
  gid?: number | undefined;
}

export async function attachMacvtapModel(
  ctx: PluginContext,
  p: MacvtapModelParams,
  res: EndpointResources,
  undo: UndoStack,
): Promise<void> {
  const link = p.link.name;
  const orig = p.link.mac;
  const swapped = randomPrivateMac();
  await checkpoint(ctx, 'macvtap:read-link');
  const [addrs, routes] = await Promise.all([readAddresses(ctx, link), readRestorableRoutes(ctx, link)]);
  const saved = { mac: orig, addresses: [] as IPAddress[], addressLines: [] as string[], routes };
  res.saved = saved;
  // Deleting addresses takes their routes with them: put them back after the addresses (undo runs newest first).
  if (routes.length > 0)
    undo.push('restore routes', async () => {
      await teardownLines(ctx, 'ip', routes);
    });
  await checkpoint(ctx, 'macvtap:create');
  const tmp = scratchIfName();
  const txq = p.link.txqlen > 0 ? p.link.txqlen : 1500;
  const steps: Step[] = [
    { line: `link set dev ${link} address ${swapped}`, undo: [`link set dev ${link} address ${orig}`] },
    {
      line: `link add link ${link} name ${tmp} mtu ${p.link.mtu} txqueuelen ${txq} address ${orig} type macvtap mode bridge`,
      undo: scratchUndo(ctx, tmp, p.tap),
    },
    {
      line: `link set dev ${tmp} name ${p.tap} up`,
      undo: [`link del dev ${p.tap}`],
      done: () => {
        res.tap = p.tap;
      },
    },
    // Newest first, so secondaries go before their primary; restored oldest first by the undo order.
    ...[...addrs].reverse().map(
      (a): Step => ({
        line: a.del,
        undo: [a.restore],
        done: () => {
          saved.addresses.unshift(a.addr);
          saved.addressLines.unshift(a.restore);
        },
      }),
    ),
  ];
  await runSteps(ctx, 'ip', steps, undo);
  await makeMacvtapNode(ctx, p.tap, `${ctx.runDir}/${macvtapNodeName(p.tap, res.index)}`, { uid: p.uid, gid: p.gid }, undo).then((n) => {
    res.devNode = n.path;
    res.devNumber = `${n.major}:${n.minor}`;
  });
}

/** Undo the macvtap model: delete the macvtap, give the link its MAC, addresses and routes back. */
export async function detachMacvtapModel(ctx: PluginContext, res: EndpointResources): Promise<string[]> {
  const lines: string[] = [];
  if (res.tap) lines.push(`link del dev ${res.tap}`);
  if (res.saved) {
    lines.push(`link set dev ${res.link} address ${res.saved.mac}`);
    lines.push(...res.saved.addressLines, ...res.saved.routes);
  }
  return teardownLines(ctx, 'ip', lines);
}
