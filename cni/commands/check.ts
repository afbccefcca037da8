import type { Logger } from '../../host/log.js';
import type { Attached } from '../../host/plugin.js';
import { checkEndpoint, type EndpointResources } from '../../plugins/network/endpoint.js';
import { readLinks } from '../../plugins/network/link-info.js';
import type { KataCniConfig } from '../config.js';
import { pluginContext, requireNetns } from '../context.js';
import { CNI_CODES, CniError } from '../errors.js';
import { reconstructAttached } from '../../plugins/network/reconstruct.js';
import { provablyOurs } from '../ownership.js';
import { endpointIndex } from '../tap-name.js';
import { findSandboxInterface } from '../result.js';
import type { CniRequest } from '../skel.js';
import { netnsIdentity, readRecord, runDirFor } from '../state.js';
import { expandTapName } from '../tap-name.js';

/**
 * CHECK: the attachment is still what ADD made. The endpoint check covers the tap, both ingress
 * qdiscs, both redirect filters and their targets, MTU and the guest MAC; here we add what only the
 * CNI side knows: prevResult still lists CNI_IFNAME and our tap (in CNI_NETNS), and the tap's MAC
 * and MTU are the ones the result reported. Any problem is code 120 with every problem listed.
 */
export async function cmdCheck(req: CniRequest, cfg: KataCniConfig, log: Logger): Promise<void> {
  const prev = cfg.prevResult;
  if (!prev) throw new CniError(CNI_CODES.INVALID_CONFIG, 'field "prevResult" is missing: CHECK needs the cached result of the ADD');
  const ns = requireNetns(req.netns);
  const ctx = pluginContext(req.containerId, ns, log, runDirFor(cfg.stateDir, cfg.name, req.containerId, req.ifname));
  const problems: string[] = [];

  const rec = readRecord<Attached<EndpointResources>>(cfg.stateDir, cfg.name, req.containerId, req.ifname);
  const id = netnsIdentity(ns.path);
  // Same namespace inode, and (inodes are reused) what is there is provably the recorded attachment.
  const recordHere =
    rec !== undefined &&
    (rec.netnsId === undefined || (id !== undefined && id.ino === rec.netnsId.ino && id.dev === rec.netnsId.dev)) &&
    (rec.attached === undefined || provablyOurs(rec, rec.attached, await readLinks(ctx)));
  if (!rec)
    problems.push(
      `no attachment record for container ${req.containerId} interface ${req.ifname} in ${cfg.stateDir} (was ADD run with this config?)`,
    );
  else if (!recordHere)
    problems.push(`the attachment record of ${req.containerId}/${req.ifname} was made in another network namespace than ${req.netns}`);
  else if (!rec.attached) problems.push(`the ADD of ${req.containerId}/${req.ifname} did not complete (record still pending)`);

  const tapName = recordHere && rec ? rec.tapName : expandTapName(cfg.tapName, req.ifname);
  const attached =
    recordHere && rec?.attached
      ? rec.attached
      : await reconstructAttached(ctx, { ifname: req.ifname, tapName, model: cfg.model, index: endpointIndex(req.ifname) });
  problems.push(...(await checkEndpoint(ctx, attached)));

  if (findSandboxInterface(prev, req.ifname, req.netns) < 0)
    problems.push(`prevResult has no interface ${req.ifname} with sandbox ${req.netns}`);
  const tapIdx = findSandboxInterface(prev, tapName, req.netns);
  if (tapIdx < 0) {
    problems.push(`prevResult has no tap interface ${tapName} with sandbox ${req.netns}`);
  } else {
    const entry = prev.interfaces![tapIdx]!;
    const tap = (await readLinks(ctx)).find((l) => l.name === tapName);
    if (tap && entry.mac && entry.mac.toLowerCase() !== tap.mac)
      problems.push(`MAC mismatch: tap ${tapName} has ${tap.mac}, the result reported ${entry.mac}`);
    if (tap && entry.mtu !== undefined && entry.mtu !== tap.mtu)
      problems.push(`MTU mismatch: tap ${tapName} has ${tap.mtu}, the result reported ${entry.mtu}`);
  }
  if (problems.length > 0) {
    throw new CniError(120, `kata-cni CHECK failed for ${req.ifname} in ${req.netns}: ${problems.join('; ')}`, problems.join('\n'));
  }
}
