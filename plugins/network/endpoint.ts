import { stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NetMacvtapSpec, NetTapSpec, NetVhostUserSpec, VfioSpec, DeviceSpec } from '../../host/device-specs.js';
import { KataError, isKataError } from '../../host/errors.js';
import { validateIfName, validateSocketPath } from '../../host/names.js';
import { assertNetnsExists, netnsLabel } from '../../host/netns.js';
import { checkpoint, type Attached, type PluginContext } from '../../host/plugin.js';
import { UndoStack } from '../../host/undo.js';
import { readLinks } from './link-info.js';
import { netDeviceId, tapName, REDIRECT_FILTER_PREF } from './names.js';
import { attachTcFilter, detachTcFilter } from './models/tcfilter.js';
import { attachMacvtapModel, detachMacvtapModel, macvtapNodeName, makeMacvtapNode, removeNode, splitDevNumber } from './models/macvtap.js';
import { bindToVfio, pciDriver, restorePciDriver } from './endpoints/physical.js';
import { endpointTypeOf, guestInterface, vhostUserSocketOf, type ClassifyOptions } from './detect.js';
import type { EndpointResources } from './resources.js';
import type { EndpointRequest, EndpointType, ScannedLink } from './types.js';

export type { EndpointResources } from './resources.js';
export { createTap, deleteTap } from './endpoints/tap.js';

/**
 * Network endpoints: detect the Kata endpoint type of a scanned link, attach it (host plumbing +
 * hypervisor device spec + guest interface descriptor), check it, and detach it as the exact inverse.
 *
 * | type       | tcfilter                    | macvtap                         | none            |
 * |------------|-----------------------------|---------------------------------|-----------------|
 * | virtual    | tap + tc redirect both ways | macvtap on the link, MAC swap   | nothing created |
 * | macvlan    | same                        | same                            | nothing created |
 * | ipvlan     | same                        | E_UNSUPPORTED (as Kata)         | nothing created |
 * | tuntap     | new tap + redirect          | E_UNSUPPORTED                   | nothing created |
 * | macvtap    | private device node for the existing macvtap (model ignored unless none) |
 * | vhost-user | nothing created; the spec carries the socket                             |
 * | physical   | bound to vfio-pci, original driver restored on detach (unless none)      |
 *
 * Model "none" creates nothing on the host for the link: the result has no device spec, only the
 * guest interface descriptor (the caller plumbs the VM itself, as Kata's none + disable_new_netns).
 * A link whose tap a chained CNI plugin already made (`preattached`, as kata-cni does) gets that tap
 * as its device and nothing else: detach leaves it to the plugin's DEL.
 */

/** Attach options: where vhost-user sockets are looked for (see detect.ts). */
export type AttachOptions = ClassifyOptions;

function validateRequest(req: EndpointRequest): void {
  const l = req.link;
  if (!l || typeof l !== 'object') throw new KataError('E_INVALID_ARGUMENT', 'endpoint request has no link');
  validateIfName(l.name, 'link name');
  if (!Number.isInteger(req.index) || req.index < 0 || req.index > 99999)
    throw new KataError('E_INVALID_ARGUMENT', `endpoint index ${req.index} must be an integer 0..99999`, { index: req.index });
  if (!Number.isInteger(req.queues) || req.queues < 1 || req.queues > 256)
    throw new KataError('E_INVALID_ARGUMENT', `queues ${req.queues} must be an integer 1..256`, { queues: req.queues });
  if (!['tcfilter', 'macvtap', 'none'].includes(req.model))
    throw new KataError('E_UNSUPPORTED', `internetworking model "${req.model}" is not supported (tcfilter, macvtap, none)`, {
      model: req.model,
    });
  for (const [k, v] of [
    ['uid', req.uid],
    ['gid', req.gid],
  ] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0))
      throw new KataError('E_INVALID_ARGUMENT', `${k} ${v} must be a non-negative integer`);
  }
  if (!Number.isInteger(l.mtu) || l.mtu < 68 || l.mtu > 65535)
    throw new KataError('E_INVALID_ARGUMENT', `link ${l.name}: MTU ${l.mtu} is not valid`, { link: l.name });
  if (req.tapName !== undefined) validateIfName(req.tapName, 'tap name');
}

/** Attach one endpoint. On failure every finished step is undone (newest first) and the error rethrown. */
export async function attachEndpoint(
  ctx: PluginContext,
  req: EndpointRequest,
  opts: AttachOptions = {},
): Promise<Attached<EndpointResources>> {
  validateRequest(req);
  if (ctx.netns) assertNetnsExists(ctx.netns);
  const link = req.link;
  const type: EndpointType = req.vhostUserSocket !== undefined ? 'vhost-user' : (req.type ?? endpointTypeOf(link, opts));
  const id = netDeviceId(req.index);
  const tap = req.tapName ?? tapName(req.index);
  const res: EndpointResources = {
    type,
    model: req.model,
    ...(ctx.netns ? { netns: ctx.netns.path } : {}),
    link: link.name,
    linkIndex: link.index,
    index: req.index,
    guestMac: link.mac,
    mtu: link.mtu,
    ingress: [],
    filters: [],
  };
  const devices: DeviceSpec[] = [];
  const log = ctx.log.child({ endpoint: link.name, type, model: req.model, index: req.index });
  const undo = new UndoStack(log);
  try {
    if (req.model === 'none') {
      // Nothing on the host: guest descriptors only.
    } else if (req.preattached) {
      // A CNI plugin (kata-cni) made the tap and both redirects: the VM gets that tap, nothing is made here.
      const p = req.preattached;
      validateIfName(p.tap, 'preattached tap');
      res.preattachedTap = p.tap;
      const queues = p.multiQueue ? req.queues : 1;
      const spec: NetTapSpec = { kind: 'net-tap', id, ifname: p.tap, mac: link.mac, mtu: link.mtu, queues, vhost: req.vhost };
      devices.push(spec);
    } else if (type === 'virtual' || type === 'macvlan' || type === 'ipvlan' || type === 'tuntap') {
      if (req.model === 'macvtap') {
        if (type === 'ipvlan' || type === 'tuntap') {
          throw new KataError(
            'E_UNSUPPORTED',
            `link ${link.name} (${type}): the macvtap internetworking model does not work for ${type} endpoints; use tcfilter`,
            { link: link.name, type },
          );
        }
        await attachMacvtapModel(ctx, { link, tap, queues: req.queues, uid: req.uid, gid: req.gid }, res, undo);
        const spec: NetMacvtapSpec = {
          kind: 'net-macvtap',
          id,
          devPath: res.devNode!,
          ifname: tap,
          mac: res.guestMac,
          mtu: link.mtu,
          queues: req.queues,
          vhost: req.vhost,
        };
        devices.push(spec);
      } else {
        await attachTcFilter(ctx, { link: link.name, name: tap, mtu: link.mtu, queues: req.queues, uid: req.uid, gid: req.gid }, res, undo);
        const spec: NetTapSpec = { kind: 'net-tap', id, ifname: tap, mac: link.mac, mtu: link.mtu, queues: req.queues, vhost: req.vhost };
        devices.push(spec);
      }
    } else if (type === 'macvtap') {
      const node = await makeMacvtapNode(
        ctx,
        link.name,
        join(ctx.runDir, macvtapNodeName(link.name, req.index)),
        { uid: req.uid, gid: req.gid },
        undo,
      );
      res.devNode = node.path;
      res.devNumber = `${node.major}:${node.minor}`;
      const spec: NetMacvtapSpec = {
        kind: 'net-macvtap',
        id,
        devPath: node.path,
        ifname: link.name,
        mac: link.mac,
        mtu: link.mtu,
        queues: req.queues,
        vhost: req.vhost,
      };
      devices.push(spec);
    } else if (type === 'vhost-user') {
      const socket =
        req.vhostUserSocket !== undefined
          ? validateSocketPath(req.vhostUserSocket, 'vhost-user socket')
          : vhostUserSocketOf(link, opts.vhostUserDir);
      if (socket === undefined)
        throw new KataError(
          'E_INVALID_ARGUMENT',
          `link ${link.name}: no vhost-user socket for any of its addresses (Kata: <dir>/vhostuser_<IP>/vhu.sock)`,
          { link: link.name },
        );
      res.vhostUserSocket = socket;
      const spec: NetVhostUserSpec = { kind: 'net-vhost-user', id, socket, mac: link.mac, queues: req.queues };
      devices.push(spec);
    } else if (type === 'physical') {
      res.pci = await bindToVfio(ctx, link.pciAddress!, undo);
      const spec: VfioSpec = { kind: 'vfio', id, bdf: link.pciAddress!, mac: link.mac };
      devices.push(spec);
    } else {
      throw new KataError('E_UNSUPPORTED', `endpoint type ${type} cannot be attached from a scanned link (use createTap)`, {
        link: link.name,
      });
    }
    await checkpoint(ctx, 'endpoint:complete');
  } catch (e) {
    await undo.unwind();
    throw e;
  }
  log.debug({ res }, 'endpoint attached');
  return { kind: `net-${type}`, resources: res, devices, guest: { interfaces: [guestInterface(link, type, res.guestMac)] } };
}

/**
 * Detach an endpoint: the exact inverse of attach. Idempotent, harmless when things (or the whole
 * namespace) are already gone, and it removes the tap also in a namespace the caller owns
 * (kata-containers#6339). Every step runs; real failures are reported together at the end.
 */
export async function detachEndpoint(ctx: PluginContext, attached: Attached<EndpointResources>): Promise<void> {
  const res = attached.resources;
  const problems: string[] = [];
  if (res.preattachedTap) return; // the CNI plugin that made it removes it (its DEL)
  if (res.type === 'tap') {
    if (res.tap) problems.push(...(await detachTcFilter(ctx, res)));
  } else if (res.model !== 'none') {
    if (res.model === 'macvtap' && (res.type === 'virtual' || res.type === 'macvlan')) {
      problems.push(...(await detachMacvtapModel(ctx, res)));
    } else if (res.type === 'virtual' || res.type === 'macvlan' || res.type === 'ipvlan' || res.type === 'tuntap') {
      problems.push(...(await detachTcFilter(ctx, res)));
    }
    if (res.devNode) {
      try {
        await removeNode(res.devNode);
      } catch (e) {
        problems.push(`remove ${res.devNode}: ${(e as Error).message}`);
      }
    }
    if (res.pci) {
      try {
        await restorePciDriver(ctx, res.pci);
      } catch (e) {
        problems.push((e as Error).message);
      }
    }
  }
  if (problems.length > 0) {
    throw new KataError(
      'E_NETLINK',
      `detach of endpoint ${res.link} (${res.type}) in network namespace ${netnsLabel(ctx.netns)} left problems: ${problems.join('; ')}`,
      { link: res.link, problems },
    );
  }
}

interface QdiscJson {
  kind?: string;
  dev?: string;
  handle?: string;
}
interface FilterJson {
  kind?: string;
  pref?: number;
  options?: { actions?: { kind?: string; mirred_action?: string; direction?: string; to_dev?: string }[] };
}

async function redirectProblems(ctx: PluginContext, dev: string, target: string): Promise<string[]> {
  let filters: FilterJson[];
  try {
    filters = await ctx.netlink.json<FilterJson[]>('tc', ctx.netns, ['filter', 'show', 'dev', dev, 'parent', 'ffff:']);
  } catch (e) {
    return [`cannot list filters of ${dev}: ${(e as Error).message}`];
  }
  const ok = filters.some(
    (f) =>
      f.kind === 'u32' &&
      f.pref === REDIRECT_FILTER_PREF &&
      (f.options?.actions ?? []).some(
        (a) => a.kind === 'mirred' && a.mirred_action === 'redirect' && a.direction === 'egress' && a.to_dev === target,
      ),
  );
  if (ok) return [];
  const others = filters
    .flatMap((f) => f.options?.actions ?? [])
    .filter((a) => a.kind === 'mirred')
    .map((a) => a.to_dev);
  return [
    others.length > 0
      ? `redirect filter on ${dev} points to ${others.join(',')} instead of ${target}`
      : `redirect filter ${dev} -> ${target} is missing`,
  ];
}

/**
 * Check an attached endpoint against the kernel; returns the problems found (empty = healthy):
 * missing tap/macvtap/link, missing ingress qdisc on either side, missing or wrong redirect filter,
 * MTU mismatch, MAC mismatch, missing device node, PCI function not on vfio-pci.
 */
export async function checkEndpoint(ctx: PluginContext, attached: Attached<EndpointResources>): Promise<string[]> {
  const res = attached.resources;
  const p: string[] = [];
  if (res.model === 'none' && res.type !== 'tap') return p;
  if (res.type === 'vhost-user') {
    if (!res.vhostUserSocket || !existsSync(res.vhostUserSocket)) p.push(`vhost-user socket ${res.vhostUserSocket} does not exist`);
    return p;
  }
  if (res.type === 'physical') {
    if (res.pci) {
      const d = await pciDriver(ctx, res.pci.bdf);
      if (d !== 'vfio-pci') p.push(`PCI function ${res.pci.bdf} is bound to ${d ?? 'no driver'}, not vfio-pci`);
    }
    return p;
  }
  if (ctx.netns && !existsSync(ctx.netns.path)) return [`network namespace ${netnsLabel(ctx.netns)} does not exist`];
  let links: ScannedLink[];
  try {
    links = await readLinks(ctx);
  } catch (e) {
    if (isKataError(e, 'E_NETNS_NOT_FOUND')) return [`network namespace ${netnsLabel(ctx.netns)} does not exist`];
    throw e;
  }
  const byName = new Map(links.map((l) => [l.name, l]));
  const link = byName.get(res.link);
  if (!link) p.push(`link ${res.link} is missing`);
  if (res.devNode) {
    try {
      const st = await stat(res.devNode);
      const { major, minor } = splitDevNumber(st.rdev);
      if (!st.isCharacterDevice()) p.push(`${res.devNode} is not a character device`);
      else if (res.devNumber !== `${major}:${minor}`) p.push(`${res.devNode} is ${major}:${minor}, expected ${res.devNumber}`);
    } catch {
      p.push(`device node ${res.devNode} is missing`);
    }
  }
  if (res.type === 'macvtap') return p;
  if (res.preattachedTap) {
    if (!byName.has(res.preattachedTap)) p.push(`tap ${res.preattachedTap} (made by the CNI plugin) is missing`);
    return p;
  }
  if (res.type === 'tap') {
    const t = byName.get(res.link);
    if (t && t.mtu !== res.mtu) p.push(`MTU mismatch: tap ${res.link} has ${t.mtu}, expected ${res.mtu}`);
    return p;
  }
  const tap = res.tap ? byName.get(res.tap) : undefined;
  if (!res.tap || !tap) {
    p.push(`${res.model === 'macvtap' ? 'macvtap' : 'tap'} ${res.tap ?? tapName(res.index)} is missing`);
    return p;
  }
  if (link && tap.mtu !== link.mtu) p.push(`MTU mismatch: ${tap.name} has ${tap.mtu}, ${link.name} has ${link.mtu}`);
  if (res.model === 'macvtap') {
    if (tap.kind !== 'macvtap') p.push(`${tap.name} is a ${tap.kind || 'device'}, not a macvtap`);
    if (tap.mac !== res.guestMac) p.push(`MAC mismatch: macvtap ${tap.name} has ${tap.mac}, the guest MAC is ${res.guestMac}`);
    if (link && link.mac === res.guestMac) p.push(`MAC mismatch: ${link.name} still has the guest MAC ${res.guestMac}`);
    return p;
  }
  // tcfilter
  if (tap.kind !== 'tun' || tap.tunMode !== 'tap') p.push(`${tap.name} is not a tap device`);
  if (link && link.mac !== res.guestMac) p.push(`MAC mismatch: ${link.name} has ${link.mac}, the guest was given ${res.guestMac}`);
  let qdiscs: QdiscJson[] = [];
  try {
    qdiscs = await ctx.netlink.json<QdiscJson[]>('tc', ctx.netns, ['qdisc', 'show']);
  } catch (e) {
    p.push(`cannot list qdiscs: ${(e as Error).message}`);
  }
  for (const dev of [res.link, res.tap]) {
    if (!qdiscs.some((q) => q.dev === dev && q.kind === 'ingress')) p.push(`ingress qdisc on ${dev} is missing`);
  }
  if (link) p.push(...(await redirectProblems(ctx, res.link, res.tap)));
  p.push(...(await redirectProblems(ctx, res.tap, res.link)));
  return p;
}
