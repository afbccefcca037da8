import { KataError } from '../../../host/errors.js';
import { netnsLabel } from '../../../host/netns.js';
import { checkpoint, type PluginContext } from '../../../host/plugin.js';
import type { UndoStack } from '../../../host/undo.js';
import { REDIRECT_FILTER_PREF, scratchIfName } from '../names.js';
import { runSteps, scratchUndo, teardownLines, type Step } from '../line-batch.js';
import type { EndpointResources, RedirectFilter } from '../resources.js';

/**
 * The tcfilter internetworking model (Kata's default): a tap `tap<idx>_kata` beside the pod link,
 * an ingress qdisc on both, and a u32 "match u8 0 0" filter with `mirred egress redirect` each way.
 * The pod link keeps its addresses and MAC; the guest gets the link's MAC.
 *
 * Cost: one `ip` batch (create, rename, MTU, up) and one `tc` batch (2 qdiscs, 2 filters).
 */

export interface TapSpec {
  name: string;
  mtu?: number;
  /** >1 makes a multi-queue tap. */
  queues: number;
  /** Host MAC of the tap itself (not the guest MAC). */
  mac?: string;
  uid?: number;
  gid?: number;
}

/**
 * ip batch lines creating a persistent tap (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR [| IFF_MULTI_QUEUE])
 * under a scratch name, then renaming it, setting MTU/MAC and bringing it up in one line. Because
 * the rename is what claims the final name, a tap of that name that already exists is never touched.
 */
export function tapCreateSteps(ctx: PluginContext, spec: TapSpec, onCreated: () => void): Step[] {
  const tmp = scratchIfName();
  const mode = ['mode', 'tap', 'vnet_hdr'];
  if (spec.queues > 1) mode.push('multi_queue');
  if (spec.uid !== undefined) mode.push('user', String(spec.uid));
  if (spec.gid !== undefined) mode.push('group', String(spec.gid));
  const set = [`link set dev ${tmp} name ${spec.name}`];
  if (spec.mtu !== undefined) set.push(`mtu ${spec.mtu}`);
  if (spec.mac !== undefined) set.push(`address ${spec.mac}`);
  set.push('up');
  return [
    { line: `tuntap add dev ${tmp} ${mode.join(' ')}`, undo: scratchUndo(ctx, tmp, spec.name) },
    { line: set.join(' '), undo: [`link del dev ${spec.name}`], done: onCreated },
  ];
}

function redirectLine(dev: string, target: string): string {
  return `filter add dev ${dev} parent ffff: protocol all pref ${REDIRECT_FILTER_PREF} u32 match u8 0 0 action mirred egress redirect dev ${target}`;
}

function redirectDeleteLine(f: RedirectFilter): string {
  return `filter del dev ${f.dev} parent ffff: pref ${f.pref} protocol all u32`;
}

/** tc lines setting up the redirect between `link` and `tap`, recording what was added in res. */
function redirectSteps(link: string, tap: string, res: EndpointResources): Step[] {
  const filter = (dev: string, target: string): RedirectFilter => ({ dev, target, pref: REDIRECT_FILTER_PREF });
  return [
    // On the tap, deleting the tap removes qdisc and filter: no undo of their own.
    { line: `qdisc add dev ${tap} ingress`, done: () => res.ingress.push(tap) },
    { line: `qdisc add dev ${link} ingress`, undo: [`qdisc del dev ${link} ingress`], done: () => res.ingress.push(link) },
    { line: redirectLine(link, tap), undo: [redirectDeleteLine(filter(link, tap))], done: () => res.filters.push(filter(link, tap)) },
    { line: redirectLine(tap, link), done: () => res.filters.push(filter(tap, link)) },
  ];
}

/** Run the redirect batch with Kata's EBUSY policy (5 attempts, 10 ms x i); a foreign ingress qdisc is a clear error. */
async function addRedirect(ctx: PluginContext, link: string, tap: string, res: EndpointResources, undo: UndoStack): Promise<void> {
  try {
    await runSteps(ctx, 'tc', redirectSteps(link, tap, res), undo, 5);
  } catch (e) {
    const m = e instanceof KataError ? /^tc qdisc add dev (\S+) ingress .*Exclusivity flag on/s.exec(e.message) : null;
    if (m) {
      throw new KataError(
        'E_LINK_EXISTS',
        `link ${m[1]} in network namespace ${netnsLabel(ctx.netns)} already has an ingress qdisc: another tool redirects its traffic; remove that qdisc or use internetworking model "none"`,
        { link: m[1], netns: ctx.netns?.path },
        { cause: e },
      );
    }
    throw e;
  }
}

export async function attachTcFilter(
  ctx: PluginContext,
  p: { link: string } & TapSpec,
  res: EndpointResources,
  undo: UndoStack,
): Promise<void> {
  await checkpoint(ctx, 'tcfilter:create-tap');
  await runSteps(
    ctx,
    'ip',
    tapCreateSteps(ctx, p, () => {
      res.tap = p.name;
    }),
    undo,
  );
  await checkpoint(ctx, 'tcfilter:redirect');
  await addRedirect(ctx, p.link, p.name, res, undo);
}

/**
 * Undo the tcfilter model: the link's ingress qdisc if we added it (its filters go with it), else only
 * our filter on it; then the tap (its qdisc and filter go with it). Returns the real failures.
 */
export async function detachTcFilter(ctx: PluginContext, res: EndpointResources): Promise<string[]> {
  const tc: string[] = [];
  if (res.ingress.includes(res.link)) tc.push(`qdisc del dev ${res.link} ingress`);
  else for (const f of res.filters) if (f.dev === res.link) tc.push(redirectDeleteLine(f));
  const ip = res.tap ? [`link del dev ${res.tap}`] : [];
  const [a, b] = await Promise.all([teardownLines(ctx, 'tc', tc), teardownLines(ctx, 'ip', ip)]);
  return [...a, ...b];
}
