import type { PluginContext, Attached } from '../../host/plugin.js';
import { readLinks } from './link-info.js';
import { REDIRECT_FILTER_PREF } from './names.js';
import type { EndpointResources } from './resources.js';

/**
 * When there is no complete record of an endpoint attach (kata-cni's DEL, CHECK or GC with its state
 * dir wiped; a crash between an attach and its journal record, in kata-cni or the sandbox), rebuild
 * the Attached object from what the kernel shows, claiming only what is provably ours:
 *  - the tap, if a link of the expected name exists and is a tap (tcfilter) or a macvtap (macvtap);
 *  - on CNI_IFNAME, our redirect filter (found by its priority); its ingress qdisc only when every
 *    filter under it is ours and either one of ours is there or our tap is (so removing the qdisc
 *    removes nothing of anybody else).
 * The macvtap model's saved MAC/addresses of the pod link cannot be rebuilt: DEL then removes the
 * macvtap only (the namespace is normally about to go anyway).
 */
interface FilterJson {
  kind?: string;
  pref?: number;
}

export async function reconstructAttached(
  ctx: PluginContext,
  p: { ifname: string; tapName: string; model: 'tcfilter' | 'macvtap'; index: number },
): Promise<Attached<EndpointResources>> {
  const links = await readLinks(ctx);
  const link = links.find((l) => l.name === p.ifname);
  const tap = links.find((l) => l.name === p.tapName);
  const tapIsOurs = tap !== undefined && (p.model === 'macvtap' ? tap.kind === 'macvtap' : tap.kind === 'tun' && tap.tunMode === 'tap');
  const res: EndpointResources = {
    type: 'virtual',
    model: p.model,
    ...(ctx.netns ? { netns: ctx.netns.path } : {}),
    link: p.ifname,
    linkIndex: link?.index ?? 0,
    index: p.index,
    guestMac: p.model === 'macvtap' ? (tap?.mac ?? '') : (link?.mac ?? ''),
    mtu: link?.mtu ?? 0,
    ingress: [],
    filters: [],
  };
  if (tapIsOurs) res.tap = p.tapName;
  if (link && p.model === 'tcfilter') {
    let filters: FilterJson[] = [];
    try {
      filters = await ctx.netlink.json<FilterJson[]>('tc', ctx.netns, ['filter', 'show', 'dev', p.ifname, 'parent', 'ffff:']);
    } catch {
      filters = []; // no ingress qdisc: nothing of ours on the link
    }
    const withPref = filters.filter((f) => f.pref !== undefined);
    const ours = withPref.filter((f) => f.pref === REDIRECT_FILTER_PREF);
    if (ours.length > 0) res.filters.push({ dev: p.ifname, target: p.tapName, pref: REDIRECT_FILTER_PREF });
    const qdiscExists = filters.length > 0 || (await hasIngress(ctx, p.ifname));
    if (qdiscExists && withPref.length === ours.length && (ours.length > 0 || tapIsOurs)) res.ingress.push(p.ifname);
  }
  return { kind: `net-${res.type}`, resources: res, devices: [], guest: {} };
}

async function hasIngress(ctx: PluginContext, dev: string): Promise<boolean> {
  try {
    const q = await ctx.netlink.json<{ kind?: string }[]>('tc', ctx.netns, ['qdisc', 'show', 'dev', dev, 'ingress']);
    return q.some((x) => x.kind === 'ingress');
  } catch {
    return false;
  }
}
