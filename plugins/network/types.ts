import type { ARPNeighbor, IPAddress, Route } from '../../host/agent-types.js';

/** Kata's internetworking models (Go runtime names). */
export type InternetworkingModel = 'tcfilter' | 'macvtap' | 'none';

/** Kata endpoint types (the strings of virtcontainers/endpoint.go). */
export type EndpointType = 'virtual' | 'macvlan' | 'ipvlan' | 'tuntap' | 'tap' | 'vhost-user' | 'physical' | 'macvtap';

/** One link of a namespace as the scan sees it: what detection and attach need, read once. */
export interface ScannedLink {
  name: string;
  index: number;
  /** netlink kind ("veth", "macvlan", "ipvlan", "tun", "macvtap", ...) or "" for a plain device. */
  kind: string;
  /** For kind "tun": "tap" or "tun". */
  tunMode?: 'tap' | 'tun';
  /** For kind "tun": made with IFF_MULTI_QUEUE (a VMM may open several queues). */
  tunMultiQueue?: boolean;
  mac: string;
  mtu: number;
  txqlen: number;
  up: boolean;
  /** IFF_NOARP etc., as the kernel reports them. */
  rawFlags: number;
  addresses: IPAddress[];
  /** ethtool bus info when it is a PCI address (physical NIC / VF). */
  pciAddress?: string;
}

/** A tap a chained CNI plugin (kata-cni) already joined to a link with a redirect each way (preattached.ts). */
export interface Preattached {
  tap: string;
  mtu: number;
  multiQueue: boolean;
}

/** A link the scan keeps, with its endpoint type (detect.ts classifyLink: the one classifier). */
export interface ScannedEndpoint {
  link: ScannedLink;
  type: EndpointType;
  /** The tap a CNI plugin already joined to this link: the VM gets it, nothing is attached. */
  preattached?: Preattached;
}

/** The result of scanning a namespace. */
export interface ScanResult {
  endpoints: ScannedEndpoint[];
  routes: Route[];
  neighbors: ARPNeighbor[];
}

/** What a caller asks of one endpoint attach. */
export interface EndpointRequest {
  /** The link to attach, as scanned. */
  link: ScannedLink;
  /** Its endpoint type as the scan classified it; when absent, attach classifies the link itself (same classifier). */
  type?: EndpointType;
  /** Endpoint index: names the host devices tap<index>_kata / br<index>_kata. */
  index: number;
  model: InternetworkingModel;
  /** Virtqueue pairs; >1 makes a multi-queue tap. */
  queues: number;
  /** Use vhost-net (false when disabled by config or /dev/vhost-net is missing). */
  vhost: boolean;
  /** Tap name override (default tap<index>_kata). */
  tapName?: string;
  /** Owner of the tap (tun ioctl TUNSETOWNER/TUNSETGROUP via `ip tuntap ... user/group`). */
  uid?: number;
  gid?: number;
  /** vhost-user socket given explicitly (otherwise discovered by Kata's /tmp/vhostuser_<IP>/vhu.sock convention). */
  vhostUserSocket?: string;
  /** Use this tap, which a CNI plugin already joined to the link (and removes on its DEL): nothing is made or removed here. */
  preattached?: Preattached;
}
