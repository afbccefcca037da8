import { existsSync } from 'node:fs';
import type { Logger } from '../../host/log.js';
import type { Attached } from '../../host/plugin.js';
import type { EndpointResources } from '../../plugins/network/endpoint.js';
import type { KataCniConfig } from '../config.js';
import { cniNetlink, isNamespaceFile, toNetnsRef } from '../context.js';
import { CNI_CODES, CniError } from '../errors.js';
import { listRecords, netnsIdentity, removeRecord } from '../state.js';
import { detachIn } from './del.js';

/**
 * GC (spec 1.1): remove the taps and redirects of every attachment of this network that is not in
 * `cni.dev/valid-attachments` (or the older key `cni.dev/attachments`, which libcni also sends).
 * `null` means none is valid: libcni passes its list as is, and a Go nil slice (CRI-O for a network
 * without live pods) becomes null. Only attachments kata-cni recorded are candidates; a record
 * whose namespace is gone, or is now a different namespace, is just forgotten. Without either key
 * nothing is removed (code 7): GC never guesses which attachments are still in use. Failures do not
 * stop the others and are reported together (code 121).
 */
export async function cmdGc(cfg: KataCniConfig, log: Logger): Promise<void> {
  const valid = cfg.validAttachments;
  if (!valid) {
    throw new CniError(
      CNI_CODES.INVALID_CONFIG,
      'field "cni.dev/valid-attachments" is missing: GC needs the list of attachments still in use',
    );
  }
  const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
  const { records, errors } = listRecords<Attached<EndpointResources>>(cfg.stateDir, cfg.name);
  const failures = errors.map((e) => `${e.file}: ${e.error.message}`);
  for (const rec of records) {
    if (keep.has(`${rec.containerId}\0${rec.ifname}`)) continue;
    try {
      const id = netnsIdentity(rec.netns);
      const same = id !== undefined && rec.netnsId !== undefined && id.dev === rec.netnsId.dev && id.ino === rec.netnsId.ino;
      if (same && existsSync(rec.netns) && isNamespaceFile(rec.netns)) {
        const ns = toNetnsRef(rec.netns, 'record netns');
        try {
          await detachIn(ns, rec.containerId, rec.ifname, cfg, rec, log);
        } finally {
          await cniNetlink().release(ns);
        }
      }
      removeRecord(cfg.stateDir, cfg.name, rec.containerId, rec.ifname);
      log.info({ containerId: rec.containerId, ifname: rec.ifname, tap: rec.tapName }, 'GC removed a stale attachment');
    } catch (e) {
      failures.push(`${rec.containerId}/${rec.ifname} (tap ${rec.tapName} in ${rec.netns}): ${(e as Error).message}`);
    }
  }
  if (failures.length > 0) {
    throw new CniError(121, `kata-cni GC could not remove ${failures.length} stale attachment(s): ${failures[0]}`, failures.join('\n'));
  }
}
