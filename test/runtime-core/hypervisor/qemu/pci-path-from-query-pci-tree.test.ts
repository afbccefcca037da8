import t from 'tap';
import { formatPciPath, pciPathOf, type QueryPciBus } from '../../../../runtime-core/hypervisor/qemu/pci-path.js';

const dev = (slot: number, qdev_id: string, fn = 0, below?: QueryPciBus['devices']): QueryPciBus['devices'][number] => ({
  bus: 0,
  slot,
  function: fn,
  qdev_id,
  ...(below ? { pci_bridge: { bus: { number: 1, secondary: 1, subordinate: 1 }, devices: below } } : {}),
});

/** Shaped like QEMU's query-pci answer for a q35 VM with two root ports and a bridge behind one. */
const TREE: QueryPciBus[] = [
  {
    bus: 0,
    devices: [
      dev(0, ''),
      dev(1, 'vserial0'),
      dev(4, 'rp0', 0, [dev(0, 'dev-eth2')]),
      dev(5, 'rp1', 0, [dev(0, 'pcie-pci-bridge0', 0, [dev(3, 'dev-vol1')])]),
      dev(0x1f, '', 3),
      dev(6, 'dev-multi', 2),
    ],
  },
];

t.test('paths are the chain of slots from the root bus, two hex digits each', async (t) => {
  t.equal(pciPathOf(TREE, 'vserial0'), '01');
  t.equal(pciPathOf(TREE, 'dev-eth2'), '04/00');
  t.equal(pciPathOf(TREE, 'dev-vol1'), '05/00/03', 'a bridge behind a root port adds a component');
  t.equal(pciPathOf(TREE, 'dev-multi'), '06.2', 'a non-zero function is written .F');
  t.equal(pciPathOf(TREE, 'missing'), undefined);
  t.equal(pciPathOf([], 'x'), undefined);
  t.equal(
    formatPciPath([
      { slot: 0x1e, fn: 0 },
      { slot: 0, fn: 0 },
    ]),
    '1e/00',
  );
});
