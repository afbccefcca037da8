import { existsSync } from 'node:fs';
import { isKataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import type { NetnsRef } from '../../host/netns.js';
import type { Attached } from '../../host/plugin.js';
import { detachEndpoint, type EndpointResources } from '../../plugins/network/endpoint.js';
import { readLinks } from '../../plugins/network/link-info.js';
import type { ScannedLink } from '../../plugins/network/types.js';
import type { KataCniConfig, TapModel } from '../config.js';
import { cniNetlink, isNamespaceFile, pluginContext, toNetnsRef } from '../context.js';
import { CniError } from '../errors.js';
import { reconstructAttached } from '../../plugins/network/reconstruct.js';
import { quickUnlink } from '../quick-unlink.js';
import { endpointIndex } from '../tap-name.js';
import type { CniRequest } from '../skel.js';
import { type AttachmentRecord, type NetnsId, netnsIdentity, otherClaims, readRecord, removeRecord, runDirFor } from '../state.js';
import { provablyOurs } from '../ownership.js';
import { expandTapName } from '../tap-name.js';
import { mark } from '../timing.js';

type Rec = AttachmentRecord<Attached<EndpointResources>>;

/**
 * DEL, best effort and idempotent (spec: succeed when repeated, when resources or the namespace are
 * gone, with CNI_NETNS empty, without prevResult). What to remove comes from the attachment record
 * if there is one, else is rebuilt from the tap name (the template's, which is also the name of the
 * tap entry ADD put in the result) and what the kernel shows. A namespace that no longer exists
 * took everything of ours with it; a CNI_NETNS that is not a namespace holds nothing of ours.
 */
export async function cmdDel(req: CniRequest, cfg: KataCniConfig, log: Logger): Promise<void> {
  let rec: Rec | undefined;
  try {
    rec = readRecord<Attached<EndpointResources>>(cfg.stateDir, cfg.name, req.containerId, req.ifname);
  } catch (e) {
    log.warn({ err: e }, 'unreadable attachment record: rebuilding from the kernel state');
  }
  const ns = chooseNetns(req, rec, log);
  if (ns && existsSync(ns.path)) {
    await detachIn(ns, req.containerId, req.ifname, cfg, rec, log, true);
    log.info({ netns: ns.path, record: rec !== undefined }, 'detached');
  } else {
    log.info({ netns: ns?.path ?? '', record: rec !== undefined }, 'namespace gone or not given: nothing to detach in the kernel');
  }
  removeRecord(cfg.stateDir, cfg.name, req.containerId, req.ifname);
}

/** Where to clean up: CNI_NETNS if given; else the record's namespace if it is provably still the same one. */
function chooseNetns(req: CniRequest, rec: Rec | undefined, log: Logger): NetnsRef | undefined {
  if (req.netns !== '') {
    let ns: NetnsRef;
    try {
      ns = toNetnsRef(req.netns);
    } catch (e) {
      if (e instanceof CniError) {
        log.warn({ netns: req.netns }, 'CNI_NETNS is not a usable namespace path: nothing to clean in the kernel');
        return undefined;
      }
      throw e;
    }
    if (existsSync(ns.path) && !isNamespaceFile(ns.path)) {
      log.warn({ netns: req.netns }, 'CNI_NETNS is not a network namespace: nothing to clean in the kernel');
      return undefined;
    }
    return ns;
  }
  if (rec?.netnsId && sameIdentity(netnsIdentity(rec.netns), rec.netnsId) && isNamespaceFile(rec.netns)) {
    try {
      return toNetnsRef(rec.netns, 'record netns');
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function sameIdentity(a: NetnsId | undefined, b: NetnsId): boolean {
  return a !== undefined && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Detach one attachment in ns: from its record when complete, else rebuilt from the kernel state.
 * Touches nothing when the record was made in another namespace that now sits at this path (what is
 * there belongs to whoever made it), or, without a complete record, when another attachment's
 * record claims this namespace and tap. Throws only real failures. `quick`: DEL's early answer to
 * the tap's removal (quick-unlink.ts).
 */
export async function detachIn(
  ns: NetnsRef,
  containerId: string,
  ifname: string,
  cfg: KataCniConfig,
  rec: Rec | undefined,
  log: Logger,
  quick = false,
): Promise<void> {
  const ctx = pluginContext(containerId, ns, log, runDirFor(cfg.stateDir, cfg.name, containerId, ifname));
  if (quick) ctx.netlink = quickUnlink(cniNetlink());
  const here = netnsIdentity(ns.path);
  if (rec?.netnsId !== undefined && !sameIdentity(here, rec.netnsId)) {
    log.info({ netns: ns.path, tap: rec.tapName }, 'the record was made in another namespace at this path: nothing here is ours');
    return;
  }
  let links: ScannedLink[];
  try {
    links = await readLinks(ctx);
  } catch (e) {
    if (isKataError(e, 'E_NETNS_NOT_FOUND')) return; // gone meanwhile, and everything in it
    throw e;
  }
  let attached = rec?.attached;
  if (rec && attached && !provablyOurs(rec, attached, links)) {
    log.info({ netns: ns.path, tap: rec.tapName }, "a later namespace reuses the recorded one's inode: what is here is not ours");
    return;
  }
  if (!attached) {
    const model: TapModel = rec?.model === 'macvtap' || (!rec && cfg.model === 'macvtap') ? 'macvtap' : 'tcfilter';
    const tapName = rec?.tapName ?? expandTapName(cfg.tapName, ifname);
    const tapNow = links.find((l) => l.name === tapName);
    // A claim counts when its tap is provably there (its recorded MAC), or it predates recorded MACs.
    const claims = (here ? otherClaims(cfg.stateDir, { network: cfg.name, containerId, ifname }, here, tapName) : []).filter(
      (c) => c.tapMac === undefined || c.tapMac === tapNow?.mac,
    );
    if (claims.length > 0) {
      log.info(
        { netns: ns.path, tap: tapName, claimedBy: claims.map((c) => `${c.network}/${c.containerId}@${c.ifname}`) },
        'another attachment record claims this tap in this namespace: not rebuilding',
      );
      return;
    }
    attached = await reconstructAttached(ctx, { ifname, tapName, model, index: endpointIndex(ifname) });
  }
  mark('detach-planned');
  await detachEndpoint(ctx, attached);
  mark('detached');
}
