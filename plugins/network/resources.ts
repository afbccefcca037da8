import type { IPAddress } from '../../host/agent-types.js';
import type { EndpointType, InternetworkingModel } from './types.js';

/** A redirect filter this suite added (found again by device, parent ffff: and pref). */
export interface RedirectFilter {
  dev: string;
  /** Device the mirred action redirects to. */
  target: string;
  pref: number;
}

/**
 * Everything needed to undo one endpoint attach (JSON-serialisable: persisted as sandbox state).
 * Only what attach really created is recorded, so detach never removes something it did not add.
 */
export interface EndpointResources {
  type: EndpointType;
  /** The model that was applied (types without a model choice record "none" or "tcfilter"). */
  model: InternetworkingModel;
  /** Namespace path, for logs and reports (detach works on ctx.netns). */
  netns?: string;
  /** The pod link (for a "tap" endpoint: the tap itself). */
  link: string;
  linkIndex: number;
  index: number;
  guestMac: string;
  /** MTU the endpoint was set up with. */
  mtu: number;
  /** Tap or macvtap this attach created. */
  tap?: string;
  /** A tap a CNI plugin made and joined to the link (kata-cni): used, never removed here. */
  preattachedTap?: string;
  /** Devices on which this attach added the ingress qdisc. */
  ingress: string[];
  filters: RedirectFilter[];
  /** macvtap model: the pod link's state before the MAC swap and address removal. */
  saved?: {
    mac: string;
    addresses: IPAddress[];
    /** `addr add` lines restoring each address exactly (broadcast, scope, label). */
    addressLines: string[];
    /** `route add` lines for the routes that went with the addresses. */
    routes: string[];
  };
  /** Private character-device node for a macvtap (under ctx.runDir), and its major:minor. */
  devNode?: string;
  devNumber?: string;
  /** physical: the PCI function and what it was bound to before vfio-pci. */
  pci?: { bdf: string; originalDriver?: string; originalOverride?: string; bound: boolean };
  vhostUserSocket?: string;
}
