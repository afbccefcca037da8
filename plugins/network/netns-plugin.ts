import { createNetns, deleteNetns, netnsIdentity, netnsRef, sameIdentity, type NetnsIdentity } from '../../host/netns.js';
import { KataError } from '../../host/errors.js';
import type { Attached, PluginContext, ResourcePlugin } from '../../host/plugin.js';

/**
 * A network namespace the sandbox creates for itself (when it is not given one): a resource like the
 * others, journalled once `ip netns add` returned, with its identity, so teardown deletes exactly
 * that namespace and never one that already existed under the name or that replaced it later.
 */
export interface NetnsConfig {
  name: string;
}

export interface NetnsResources extends NetnsIdentity {
  name: string;
  path: string;
}

/** Links of a namespace other than loopback (a namespace only we know of has none). */
async function nonLoopbackLinks(ctx: PluginContext, name: string): Promise<string[] | undefined> {
  try {
    const links = await ctx.netlink.json<{ ifname: string }[]>('ip', netnsRef(name), ['link', 'show']);
    return links.map((l) => l.ifname).filter((n) => n !== 'lo');
  } catch {
    return undefined;
  }
}

export const netnsPlugin: ResourcePlugin<'netns', NetnsConfig, NetnsResources> = {
  kind: 'netns',
  async attach(ctx, config) {
    const ref = await createNetns(config.name);
    const id = netnsIdentity(ref.path);
    if (!id)
      throw new KataError('E_NETNS_NOT_FOUND', `network namespace ${config.name} vanished right after it was created`, { netns: ref.path });
    await ctx.netlink.batch('ip', ref, ['link set lo up']);
    return { kind: 'netns', resources: { name: config.name, path: ref.path, ...id }, devices: [], guest: {} };
  },
  detach(ctx, attached) {
    return this.recover(ctx, attached);
  },
  async recover(ctx, attached: Attached<NetnsResources>) {
    const r = attached.resources;
    const ref = netnsRef(r.name);
    if (!sameIdentity(netnsIdentity(ref.path), r)) {
      ctx.log.info({ netns: r.name }, 'the namespace this sandbox created is gone (or was replaced): not deleted');
      return;
    }
    await ctx.netlink.release(ref);
    await deleteNetns(ref);
  },
  /**
   * An interrupted create: whether `ip netns add` ran is unknown, and a namespace of that name may be
   * someone else's. It is deleted only when it holds nothing but loopback (nothing is lost then).
   */
  async sweep(ctx, config) {
    const left = await nonLoopbackLinks(ctx, config.name);
    if (left === undefined) return;
    if (left.length > 0) {
      ctx.log.warn({ netns: config.name, links: left }, 'namespace of an interrupted create holds links: left alone');
      return;
    }
    const ref = netnsRef(config.name);
    await ctx.netlink.release(ref);
    await deleteNetns(ref);
  },
};
