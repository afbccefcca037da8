import { existsSync } from 'node:fs';
import { isKataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import { attachEndpoint, detachEndpoint, type EndpointResources } from '../../plugins/network/endpoint.js';
import { readLink } from '../../plugins/network/link-info.js';
import type { Netlink } from '../../host/netlink.js';
import type { Attached, PluginContext } from '../../host/plugin.js';
import type { ScannedLink } from '../../plugins/network/types.js';
import type { KataCniConfig } from '../config.js';
import { cniNetlink, pluginContext, requireNetns, toNetnsRef } from '../context.js';
import { CNI_CODES, CniError } from '../errors.js';
import { addResult } from '../add-result.js';
import { isoTime } from '../iso-time.js';
import { findSandboxInterface, formatResult } from '../result.js';
import type { CniRequest } from '../skel.js';
import { netnsIdentity, readRecord, removeRecord, runDirFor, writeRecord, type AttachmentRecord } from '../state.js';
import { endpointIndex, expandTapName } from '../tap-name.js';
import { mark } from '../timing.js';

/** Start reading CNI_IFNAME in CNI_NETNS; resolves to undefined on any failure (ADD then reads itself). */
export function startLinkRead(req: CniRequest): Promise<ScannedLink | undefined> {
  try {
    const ns = toNetnsRef(req.netns);
    return readLink({ netlink: cniNetlink(), netns: ns }, req.ifname).catch(() => undefined);
  } catch {
    return Promise.resolve(undefined);
  }
}

/**
 * ADD: find CNI_IFNAME (with sandbox CNI_NETNS) in prevResult, attach it with the configured model,
 * record the attachment, and return prevResult plus the tap (name, mac, sandbox; mtu from 1.1.0).
 * Any failure leaves nothing behind: the endpoint code rolls its own steps back, and the record
 * (written first as "pending") is removed.
 */
export async function cmdAdd(
  req: CniRequest,
  cfg: KataCniConfig,
  log: Logger,
  earlyLink?: Promise<ScannedLink | undefined>,
): Promise<Record<string, unknown>> {
  const prev = cfg.prevResult;
  if (!prev) {
    throw new CniError(
      CNI_CODES.INVALID_CONFIG,
      'field "prevResult" is missing: kata-cni is a chained plugin; list it after an interface-creating plugin (ptp, bridge, macvlan, ...) in a conflist',
    );
  }
  if (findSandboxInterface(prev, req.ifname, req.netns) < 0) {
    const seen = (prev.interfaces ?? []).map((i) => `${i.name}${i.sandbox ? ` (sandbox ${i.sandbox})` : ''}`).join(', ') || 'none';
    throw new CniError(
      CNI_CODES.INVALID_CONFIG,
      `prevResult.interfaces has no interface "${req.ifname}" (CNI_IFNAME) with sandbox "${req.netns}" (CNI_NETNS): the previous plugin did not create it; check the plugin order and CNI_IFNAME`,
      `interfaces in prevResult: ${seen}`,
    );
  }
  const ns = requireNetns(req.netns);
  const tapName = expandTapName(cfg.tapName, req.ifname);
  const runDir = runDirFor(cfg.stateDir, cfg.name, req.containerId, req.ifname);
  const ctx = pluginContext(req.containerId, ns, log, runDir);
  // macvtap: the tap carries the link's MAC and MTU, known from the attach; tcfilter: a kernel-chosen MAC.
  const prefetch = cfg.model === 'tcfilter' ? prefetchTapAfterFirstIpBatch(ctx, tapName) : undefined;
  const netnsId = netnsIdentity(ns.path);

  const existing = safeRead(cfg, req);
  if (existing?.netnsId && netnsId && existing.netnsId.ino === netnsId.ino && existing.netnsId.dev === netnsId.dev && existsSync(ns.path)) {
    throw new CniError(
      108,
      `container ${req.containerId} interface ${req.ifname} is already attached by kata-cni (tap ${existing.tapName}) in ${req.netns}; DEL it before adding it again`,
    );
  }

  const rec: AttachmentRecord<Attached<EndpointResources>> = {
    kind: 'kata-cni-attachment',
    version: 1,
    network: cfg.name,
    containerId: req.containerId,
    ifname: req.ifname,
    netns: req.netns,
    ...(netnsId ? { netnsId } : {}),
    tapName,
    model: cfg.model,
    createdAt: isoTime(),
  };
  writeRecord(cfg.stateDir, rec);
  let attached: Attached<EndpointResources> | undefined;
  try {
    const link = (await earlyLink) ?? (await readLink(ctx, req.ifname));
    mark('link-read');
    attached = await attachEndpoint(ctx, {
      link,
      index: endpointIndex(req.ifname),
      model: cfg.model,
      queues: cfg.queues,
      vhost: cfg.vhostNet && existsSync('/dev/vhost-net'),
      tapName,
      ...(cfg.owner !== undefined ? { uid: cfg.owner } : {}),
      ...(cfg.group !== undefined ? { gid: cfg.group } : {}),
    });
    mark('attached');
    const res = attached.resources;
    const tap = prefetch ? ((await prefetch.result()) ?? (await readLink(ctx, tapName))) : { mac: res.guestMac, mtu: res.mtu };
    rec.attached = attached;
    rec.tapMac = tap.mac;
    writeRecord(cfg.stateDir, rec);
    const result = addResult(prev, {
      tap: { name: tapName, mac: tap.mac, mtu: tap.mtu },
      netns: req.netns,
      ifname: req.ifname,
      containerId: req.containerId,
      guestMac: res.guestMac,
      convention: cfg.resultConvention,
    });
    log.info({ tap: tapName, link: req.ifname, model: cfg.model }, 'attached');
    return formatResult(result, cfg.cniVersion);
  } catch (e) {
    if (attached) {
      try {
        await detachEndpoint(ctx, attached);
      } catch (d) {
        log.warn({ err: d }, 'rollback of the attachment failed');
      }
    }
    removeRecord(cfg.stateDir, cfg.name, req.containerId, req.ifname);
    if (isKataError(e, 'E_LINK_EXISTS') && e.message.includes(` name ${tapName} `)) {
      throw new CniError(
        108,
        `the tap name "${tapName}" is already taken in CNI_NETNS ${req.netns}: a previous ADD was not DELeted, or another link has that name; DEL first or change "tapName"`,
        e.message,
      );
    }
    throw e;
  }
}

/**
 * The result needs the tap's MAC, which only the kernel knows once the tap exists. Reading it after
 * attach would be one more sequential process spawn; instead the read starts as soon as the first
 * `ip` batch of the attach has fully succeeded (the one that creates the tap, in both models) and
 * runs while the `tc` batch does. If it comes too early or fails, the caller reads again.
 */
function prefetchTapAfterFirstIpBatch(ctx: PluginContext, tapName: string): { result(): Promise<ScannedLink | undefined> } {
  const inner = ctx.netlink;
  let pending: Promise<ScannedLink | undefined> | undefined;
  const wrapped: Netlink = {
    batch: async (tool, ns, lines) => {
      const out = await inner.batch(tool, ns, lines);
      if (pending === undefined && tool === 'ip' && out.length > 0 && out.every((o) => o === null)) {
        pending = readLink({ netlink: inner, netns: ns }, tapName).catch(() => undefined);
      }
      return out;
    },
    json: (tool, ns, args) => inner.json(tool, ns, args),
    release: (ns) => inner.release(ns),
    close: () => inner.close(),
  };
  ctx.netlink = wrapped;
  return { result: async () => (pending ? await pending : undefined) };
}

function safeRead(cfg: KataCniConfig, req: CniRequest): AttachmentRecord | undefined {
  try {
    return readRecord(cfg.stateDir, cfg.name, req.containerId, req.ifname);
  } catch {
    return undefined; // an unreadable record is replaced
  }
}
