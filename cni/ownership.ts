import type { Attached } from '../host/plugin.js';
import type { EndpointResources } from '../plugins/network/resources.js';
import type { ScannedLink } from '../plugins/network/types.js';
import type { AttachmentRecord } from './state.js';

/**
 * The recorded attachment is the one in the namespace (namespace inodes are reused, so the identity
 * alone does not prove it): its tap has the recorded MAC; or, with the tap gone, the interface is
 * still the one attached (tcfilter leaves its MAC as it was; macvtap changed it, so nothing proves
 * the interface then, and it is left alone). No interface and no tap: nothing is there to harm.
 */
export function provablyOurs(rec: AttachmentRecord, attached: Attached<EndpointResources>, links: readonly ScannedLink[]): boolean {
  const res = attached.resources;
  const tap = links.find((l) => l.name === rec.tapName);
  if (tap) return rec.tapMac === undefined || tap.mac === rec.tapMac;
  const link = links.find((l) => l.name === rec.ifname);
  if (!link) return true;
  return res.model !== 'macvtap' && link.mac === res.guestMac;
}
