import { existsSync } from 'node:fs';
import type { Logger } from '../../host/log.js';
import type { NetnsRef } from '../../host/netns.js';
import type { Attached } from '../../host/plugin.js';
import { detachEndpoint, type EndpointResources } from '../../plugins/network/endpoint.js';
import type { KataCniConfig, TapModel } from '../config.js';
import { pluginContext, toNetnsRef } from '../context.js';
import { CniError } from '../errors.js';
import { reconstructAttached } from '../../plugins/network/reconstruct.js';
import { endpointIndex } from '../tap-name.js';
import type { CniRequest } from '../skel.js';
import { netnsIdentity, readRecord, removeRecord, runDirFor, type AttachmentRecord, type NetnsId } from '../state.js';
import { expandTapName } from '../tap-name.js';

type Rec = AttachmentRecord<Attached<EndpointResources>>;

/**
 * DEL, best effort and idempotent (spec: succeed when repeated, when resources or the namespace are
 * gone, with CNI_NETNS empty, without prevResult). What to remove comes from the attachment record
 * if there is one, else is rebuilt from the tap name (the record's, or the template's, which is
 * also the name of the tap entry ADD put in the result) and what the kernel shows. A namespace that no longer exists took everything of ours with it.
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
    await detachIn(ns, req.containerId, req.ifname, cfg, rec, log);
    log.info({ netns: ns.path, record: rec !== undefined }, 'detached');
  } else {
    log.info({ netns: ns?.path ?? '', record: rec !== undefined }, 'namespace gone or not given: nothing to detach in the kernel');
  }
  removeRecord(cfg.stateDir, cfg.name, req.containerId, req.ifname);
}

/** Where to clean up: CNI_NETNS if given; else the record's namespace if it is provably still the same one. */
function chooseNetns(req: CniRequest, rec: Rec | undefined, log: Logger): NetnsRef | undefined {
  if (req.netns !== '') {
    try {
      return toNetnsRef(req.netns);
    } catch (e) {
      if (e instanceof CniError) {
        log.warn({ netns: req.netns }, 'CNI_NETNS is not a usable namespace path: nothing to clean in the kernel');
        return undefined;
      }
      throw e;
    }
  }
  if (rec?.netnsId && sameIdentity(netnsIdentity(rec.netns), rec.netnsId)) {
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

/** Detach one attachment in ns: from its record when complete, else rebuilt. Throws only real failures. */
export async function detachIn(
  ns: NetnsRef,
  containerId: string,
  ifname: string,
  cfg: KataCniConfig,
  rec: Rec | undefined,
  log: Logger,
): Promise<void> {
  const ctx = pluginContext(containerId, ns, log, runDirFor(cfg.stateDir, cfg.name, containerId, ifname));
  // A record made in another namespace that happens to sit at this path now is not ours to replay.
  const recordHere = rec !== undefined && (rec.netnsId === undefined || sameIdentity(netnsIdentity(ns.path), rec.netnsId));
  let attached = recordHere ? rec?.attached : undefined;
  if (!attached) {
    const model: TapModel = (recordHere && rec?.model === 'macvtap') || (!recordHere && cfg.model === 'macvtap') ? 'macvtap' : 'tcfilter';
    const tapName = (recordHere ? rec?.tapName : undefined) ?? expandTapName(cfg.tapName, ifname);
    attached = await reconstructAttached(ctx, { ifname, tapName, model, index: endpointIndex(ifname) });
  }
  await detachEndpoint(ctx, attached);
}
