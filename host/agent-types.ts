/**
 * Guest descriptors in the Kata agent's JSON shapes (types.proto / agent.proto, with the Go JSON
 * names). Plugins produce them; the runtime core sends them to the guest agent.
 */
export enum IPFamily {
  v4 = 0,
  v6 = 1,
}

export interface IPAddress {
  family: IPFamily;
  address: string;
  /** Prefix length, in decimal. */
  mask: string;
}

export interface Interface {
  device: string;
  name: string;
  IPAddresses: IPAddress[];
  mtu: number;
  hwAddr: string;
  /** Guest PCI path such as "02/00", when known (hotplug). */
  devicePath: string;
  /** Kata endpoint type, e.g. "virtual", "macvlan", "tap". */
  type: string;
  raw_flags: number;
}

export interface Route {
  /** CIDR, or "" for the default route. */
  dest: string;
  gateway: string;
  device: string;
  source: string;
  scope: number;
  family: IPFamily;
  flags: number;
  mtu: number;
}

export interface ARPNeighbor {
  toIPAddress: IPAddress;
  device: string;
  lladdr: string;
  state: number;
  flags: number;
}

export interface Storage {
  driver: string;
  driver_options: string[];
  source: string;
  fstype: string;
  options: string[];
  mount_point: string;
}

/** Everything a plugin asks the guest agent to apply. */
export interface GuestDescriptors {
  interfaces?: Interface[];
  routes?: Route[];
  neighbors?: ARPNeighbor[];
  storages?: Storage[];
}

/** Linux neighbour states (NUD_*), as the agent expects them. */
export const NUD = {
  INCOMPLETE: 0x01,
  REACHABLE: 0x02,
  STALE: 0x04,
  DELAY: 0x08,
  PROBE: 0x10,
  FAILED: 0x20,
  NOARP: 0x40,
  PERMANENT: 0x80,
} as const;
export const IFF_NOARP = 0x80;
