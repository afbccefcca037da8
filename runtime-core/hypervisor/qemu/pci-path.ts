/**
 * Guest PCI paths (Kata's "SS/SS..." form: the slot on the root bus, then the slot on each bus below
 * a bridge or root port, two hex digits each) from QMP query-pci, which the agent turns back into a
 * sysfs path. Found by QEMU device id anywhere in the tree.
 */

interface QueryPciDevice {
  bus: number;
  slot: number;
  function: number;
  qdev_id: string;
  pci_bridge?: { bus: { number: number; secondary: number; subordinate: number }; devices?: QueryPciDevice[] };
}

export interface QueryPciBus {
  bus: number;
  devices: QueryPciDevice[];
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** Slots from the root bus down to the device, or undefined when it is not in the tree. */
function findPciSlots(tree: QueryPciBus[], qdevId: string): { slot: number; fn: number }[] | undefined {
  const walk = (devs: QueryPciDevice[] | undefined, above: { slot: number; fn: number }[]): { slot: number; fn: number }[] | undefined => {
    for (const d of devs ?? []) {
      const here = [...above, { slot: d.slot, fn: d.function }];
      if (d.qdev_id === qdevId) return here;
      const below = walk(d.pci_bridge?.devices, here);
      if (below) return below;
    }
    return undefined;
  };
  const root = tree.find((b) => b.bus === 0) ?? tree[0];
  return root ? walk(root.devices, []) : undefined;
}

/** "04/00" for slot 4 on the root bus then slot 0 behind it; a non-zero function is written ".F". */
export function formatPciPath(hops: { slot: number; fn: number }[]): string {
  return hops.map((h) => (h.fn === 0 ? hex2(h.slot) : `${hex2(h.slot)}.${h.fn}`)).join('/');
}

/** The PCI path of a device by QEMU id, or undefined when query-pci does not show it. */
export function pciPathOf(tree: QueryPciBus[], qdevId: string): string | undefined {
  const hops = findPciSlots(tree, qdevId);
  return hops ? formatPciPath(hops) : undefined;
}
