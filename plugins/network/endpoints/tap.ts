import { IFF_NOARP, type IPAddress } from '../../../host/agent-types.js';
import type { NetTapSpec } from '../../../host/device-specs.js';
import { KataError } from '../../../host/errors.js';
import { validateIfName, validateMac } from '../../../host/names.js';
import { assertNetnsExists, netnsLabel } from '../../../host/netns.js';
import type { Attached, PluginContext } from '../../../host/plugin.js';
import { UndoStack } from '../../../host/undo.js';
import { checkpoint } from '../../../host/plugin.js';
import { runSteps } from '../line-batch.js';
import { tapCreateSteps, detachTcFilter } from '../models/tcfilter.js';
import { netDeviceId, randomPrivateMac } from '../names.js';
import type { EndpointResources } from '../resources.js';

/**
 * The "tap" endpoint: a tap created on request (hotplug from an interface description, Kata's
 * AddInterface with type "tap"), not found by a scan. Host side: one persistent tap with the MTU
 * asked for; the VMM opens it by name. The MAC asked for is the guest's.
 */
export interface TapRequest {
  /** Host tap to create (e.g. tap3_kata). */
  name: string;
  /** Guest MAC (default: a random locally administered one). */
  mac?: string;
  mtu?: number;
  /** >1 makes a multi-queue tap. */
  queues: number;
  uid?: number;
  gid?: number;
  /** Endpoint index (device id net<index>); default: the number in the name, else 0. */
  index?: number;
  vhost?: boolean;
  /** Interface name in the guest (default: the tap name). */
  guestName?: string;
  addresses?: IPAddress[];
  rawFlags?: number;
}

export async function createTap(ctx: PluginContext, req: TapRequest): Promise<Attached<EndpointResources>> {
  validateIfName(req.name, 'tap name');
  if (req.guestName !== undefined) validateIfName(req.guestName, 'guest interface name');
  const mac = req.mac !== undefined ? validateMac(req.mac, 'guest MAC') : randomPrivateMac();
  const mtu = req.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)
    throw new KataError('E_INVALID_ARGUMENT', `tap ${req.name}: MTU ${mtu} is not valid`, { mtu });
  if (!Number.isInteger(req.queues) || req.queues < 1 || req.queues > 256)
    throw new KataError('E_INVALID_ARGUMENT', `queues ${req.queues} must be an integer 1..256`);
  for (const v of [req.uid, req.gid])
    if (v !== undefined && (!Number.isInteger(v) || v < 0))
      throw new KataError('E_INVALID_ARGUMENT', `tap owner ${v} must be a non-negative integer`);
  if (ctx.netns) assertNetnsExists(ctx.netns);
  const index = req.index ?? Number(/(\d+)/.exec(req.name)?.[1] ?? 0);
  const res: EndpointResources = {
    type: 'tap',
    model: 'none',
    ...(ctx.netns ? { netns: ctx.netns.path } : {}),
    link: req.name,
    linkIndex: 0,
    index,
    guestMac: mac,
    mtu,
    ingress: [],
    filters: [],
  };
  const undo = new UndoStack(ctx.log);
  try {
    await checkpoint(ctx, 'tap:create');
    await runSteps(
      ctx,
      'ip',
      tapCreateSteps(ctx, { name: req.name, mtu, queues: req.queues, uid: req.uid, gid: req.gid }, () => {
        res.tap = req.name;
      }),
      undo,
    );
    await checkpoint(ctx, 'endpoint:complete');
  } catch (e) {
    await undo.unwind();
    throw e;
  }
  const spec: NetTapSpec = {
    kind: 'net-tap',
    id: netDeviceId(index),
    ifname: req.name,
    mac,
    mtu,
    queues: req.queues,
    vhost: req.vhost ?? false,
  };
  const name = req.guestName ?? req.name;
  return {
    kind: 'net-tap',
    resources: res,
    devices: [spec],
    guest: {
      interfaces: [
        {
          device: name,
          name,
          IPAddresses: (req.addresses ?? []).map((a) => ({ ...a })),
          mtu,
          hwAddr: mac,
          devicePath: '',
          type: 'tap',
          raw_flags: (req.rawFlags ?? 0) & IFF_NOARP,
        },
      ],
    },
  };
}

/** Delete a tap made by createTap: idempotent, harmless once the namespace is gone. */
export async function deleteTap(ctx: PluginContext, attached: Attached<EndpointResources>): Promise<void> {
  const problems = await detachTcFilter(ctx, attached.resources);
  if (problems.length > 0)
    throw new KataError(
      'E_NETLINK',
      `deleting tap ${attached.resources.tap} in network namespace ${netnsLabel(ctx.netns)} failed: ${problems.join('; ')}`,
    );
}
