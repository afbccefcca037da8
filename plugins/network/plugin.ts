import { join } from 'node:path';
import type { Attached, PluginContext, ResourcePlugin } from '../../host/plugin.js';
import { endpointTypeOf } from './detect.js';
import { attachEndpoint, detachEndpoint } from './endpoint.js';
import { createTap, type TapRequest } from './endpoints/tap.js';
import { macvtapNodeName, removeNode } from './models/macvtap.js';
import { tapName } from './names.js';
import { reconstructAttached } from './reconstruct.js';
import type { EndpointResources } from './resources.js';
import type { EndpointRequest } from './types.js';

/**
 * The network endpoint as a resource plugin: a link of the sandbox's namespace attached with an
 * internetworking model (endpoint.ts), or a new tap made for an interface description (Kata's
 * AddInterface of a "tap"). The internals are endpoint.ts and the models; this is only the entry
 * point the sandbox's registry holds.
 */
export type EndpointConfig = ({ from: 'link' } & EndpointRequest) | ({ from: 'tap' } & TapRequest);

/**
 * What an interrupted attach may have left, found by the names attach uses and claimed only where
 * it is provably ours (reconstruct.ts): the tap and our redirect filters and ingress qdisc, or the
 * private macvtap node. Not recoverable without a record: the macvtap model's saved MAC and
 * addresses of the pod link, and a PCI function's original driver (both are logged).
 */
async function sweep(ctx: PluginContext, c: EndpointConfig): Promise<void> {
  if (c.from === 'tap') {
    const att = await reconstructAttached(ctx, { ifname: c.name, tapName: c.name, model: 'tcfilter', index: c.index ?? 0 });
    if (att.resources.tap)
      await detachEndpoint(ctx, { ...att, resources: { ...att.resources, type: 'tap', model: 'none', ingress: [], filters: [] } });
    return;
  }
  if (c.model === 'none' || c.preattached) return; // nothing was made for it (the CNI plugin's tap is not ours)
  const type = c.type ?? endpointTypeOf(c.link);
  if (type === 'macvtap') {
    await removeNode(join(ctx.runDir, macvtapNodeName(c.link.name, c.index)));
    return;
  }
  if (type === 'physical' || type === 'vhost-user' || type === 'tap') {
    ctx.log.warn(
      { link: c.link.name, type },
      'an interrupted attach of this endpoint type cannot be swept by convention; check the link by hand',
    );
    return;
  }
  const att = await reconstructAttached(ctx, {
    ifname: c.link.name,
    tapName: c.tapName ?? tapName(c.index),
    model: c.model,
    index: c.index,
  });
  if (c.model === 'macvtap')
    ctx.log.warn({ link: c.link.name }, 'the macvtap model swapped the MAC of this link; without a record it is not restored');
  // Either way what was found is a link of ours to delete and our filters and qdisc: the tcfilter undo.
  await detachEndpoint(ctx, { ...att, resources: { ...att.resources, type, model: 'tcfilter' } });
}

export const endpointPlugin: ResourcePlugin<'endpoint', EndpointConfig, EndpointResources> = {
  kind: 'endpoint',
  attach(ctx, config) {
    if (config.from === 'tap') {
      const { from: _from, ...req } = config;
      return createTap(ctx, req);
    }
    const { from: _from, ...req } = config;
    return attachEndpoint(ctx, req);
  },
  detach: detachEndpoint,
  // Detach needs nothing but the record: the same call serves a crashed run.
  recover: detachEndpoint,
  sweep,
  complete(attached, placed): Attached<EndpointResources> {
    const i = attached.guest.interfaces?.[0];
    if (!i) return attached;
    return { ...attached, guest: { ...attached.guest, interfaces: [{ ...i, devicePath: placed.guestPciPath ?? '' }] } };
  },
};
