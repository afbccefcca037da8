import { statSync } from 'node:fs';
import { join } from 'node:path';
import { IFF_NOARP, type Interface } from '../../host/agent-types.js';
import { KataError } from '../../host/errors.js';
import type { EndpointType, ScannedLink } from './types.js';

/**
 * The one classifier of links into Kata endpoint types, shared by the scan and attach (they used to
 * disagree: a plain file at the vhost-user path made the scan say "virtual" and attach say
 * "vhost-user", so no tap was made and QEMU was handed a file as a socket). Kata's order: a PCI bus
 * address is "physical"; a socket at `<dir>/vhostuser_<IP>/vhu.sock` for one of the link's addresses
 * is "vhost-user"; then by netlink kind. A plain device without a kind (e.g. an mlx5 sub-function) is
 * driven like a veth (kata#12891).
 */

export interface ClassifyOptions {
  /** Where vhost-user sockets are looked for (Kata: /tmp, as /tmp/vhostuser_<IP>/vhu.sock). */
  vhostUserDir?: string;
}

const DEFAULT_VHOST_USER_DIR = '/tmp';

function isSocket(path: string): boolean {
  try {
    // No ENOENT error (object, stack) for the usual case of no socket.
    return statSync(path, { throwIfNoEntry: false })?.isSocket() ?? false;
  } catch {
    return false; // e.g. ENOTDIR
  }
}

/** The vhost-user socket for one of the link's addresses (only a real socket counts), or undefined. */
export function vhostUserSocketOf(link: Pick<ScannedLink, 'addresses'>, dir = DEFAULT_VHOST_USER_DIR): string | undefined {
  for (const a of link.addresses) {
    if (!/^[0-9a-fA-F.:]+$/.test(a.address)) continue;
    const p = join(dir, `vhostuser_${a.address}`, 'vhu.sock');
    if (isSocket(p)) return p;
  }
  return undefined;
}

/** Why a link has no endpoint type (a kind Kata has no endpoint for, or a TUN-mode device). */
export interface Unsupported {
  unsupported: string;
}

export function classifyLink(link: ScannedLink, opts: ClassifyOptions = {}): EndpointType | Unsupported {
  if (link.pciAddress) return 'physical';
  if (vhostUserSocketOf(link, opts.vhostUserDir) !== undefined) return 'vhost-user';
  switch (link.kind) {
    case 'veth':
    case '':
    case 'device':
      return 'virtual';
    case 'macvlan':
      return 'macvlan';
    case 'ipvlan':
      return 'ipvlan';
    case 'macvtap':
      return 'macvtap';
    case 'tun':
      if (link.tunMode === 'tap') return 'tuntap';
      return { unsupported: link.tunMode === 'tun' ? 'tun (TUN mode)' : 'tun (unknown mode)' };
    default:
      return { unsupported: link.kind };
  }
}

/** classifyLink, with an E_UNSUPPORTED naming the link and kind for a link that has no endpoint type. */
export function endpointTypeOf(link: ScannedLink, opts: ClassifyOptions = {}): EndpointType {
  const c = classifyLink(link, opts);
  if (typeof c === 'string') return c;
  if (link.kind === 'tun') {
    throw new KataError(
      'E_UNSUPPORTED',
      link.tunMode === 'tun'
        ? `link ${link.name}: TUN devices are not supported, only TAP (layer 2) devices`
        : `link ${link.name}: tun device of unknown mode; mount sysfs in the caller and rescan`,
      { link: link.name, kind: 'tun' },
    );
  }
  throw new KataError(
    'E_UNSUPPORTED',
    `link ${link.name}: unsupported network interface kind "${link.kind || 'device'}" (supported: veth, macvlan, ipvlan, tun in tap mode, macvtap, a PCI NIC, a vhost-user placeholder)`,
    { link: link.name, kind: link.kind },
  );
}

/** The guest Interface descriptor of an endpoint (the one place it is built; the guest MAC may differ from the link's). */
export function guestInterface(link: ScannedLink, type: EndpointType, guestMac = link.mac): Interface {
  return {
    device: link.name,
    name: link.name,
    IPAddresses: link.addresses.map((a) => ({ family: a.family, address: a.address, mask: a.mask })),
    mtu: link.mtu,
    hwAddr: guestMac,
    devicePath: '',
    type,
    raw_flags: link.rawFlags & IFF_NOARP,
  };
}
