import type { PluginContext } from '../../host/plugin.js';
import type { Preattached, ScannedLink } from './types.js';

/**
 * Taps that a chained CNI plugin already joined to a pod link, so that the sandbox hands that tap
 * to the VM instead of attaching the link a second time (which would fail on the tap's name, or
 * put a second redirect on the link). kata-cni does exactly what the tcfilter model does (a tap
 * with an ingress `mirred egress redirect` each way), as does firecracker's tc-redirect-tap; the
 * proof is in the kernel, not in a name or a record the sandbox cannot locate (kata-cni keeps its
 * records under its own configurable stateDir): a tap whose ingress redirects to the link, and the
 * link's ingress redirecting back to that tap. What is found is never removed by the sandbox: the
 * plugin's DEL does that.
 */
interface FilterJson {
  kind?: string;
  options?: { actions?: { kind?: string; mirred_action?: string; direction?: string; to_dev?: string }[] };
}

/** Devices the ingress filters of `dev` redirect to (mirred egress redirect); none when there is no ingress qdisc. */
async function redirectTargets(ctx: PluginContext, dev: string): Promise<string[]> {
  let filters: FilterJson[];
  try {
    filters = await ctx.netlink.json<FilterJson[]>('tc', ctx.netns, ['filter', 'show', 'dev', dev, 'parent', 'ffff:']);
  } catch {
    return []; // no ingress qdisc (or the device went): nothing is redirected
  }
  return filters.flatMap((f) =>
    (f.options?.actions ?? [])
      .filter((a) => a.kind === 'mirred' && a.mirred_action === 'redirect' && a.direction === 'egress' && typeof a.to_dev === 'string')
      .map((a) => a.to_dev!),
  );
}

/**
 * Which of `endpoints` (link names) already have a tap joined both ways, by link name. Reads only
 * the filters of the namespace's taps (none when there is no tap: nothing is spawned then).
 */
export async function findPreattached(
  ctx: PluginContext,
  links: readonly ScannedLink[],
  endpoints: readonly string[],
): Promise<Map<string, Preattached>> {
  const out = new Map<string, Preattached>();
  const wanted = new Set(endpoints);
  const taps = links.filter((l) => l.kind === 'tun' && l.tunMode === 'tap' && !wanted.has(l.name));
  const found = await Promise.all(
    taps.map(async (tap) => {
      const to = (await redirectTargets(ctx, tap.name)).filter((d) => wanted.has(d));
      if (to.length !== 1) return undefined;
      const link = to[0]!;
      return (await redirectTargets(ctx, link)).includes(tap.name) ? { link, tap } : undefined;
    }),
  );
  for (const f of found) {
    if (!f || out.has(f.link)) continue;
    out.set(f.link, { tap: f.tap.name, mtu: f.tap.mtu, multiQueue: f.tap.tunMultiQueue === true });
  }
  return out;
}
