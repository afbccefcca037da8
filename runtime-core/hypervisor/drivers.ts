import { KataError } from '../../host/errors.js';
import type { HypervisorKind } from './capabilities.js';
import type { HypervisorDriver } from './hypervisor.js';
import { qemuDriver } from './qemu/driver.js';

/** The hypervisor drivers this runtime has (a new one: its folder, one entry here, its capability row). */
const DRIVERS: Partial<Record<HypervisorKind, HypervisorDriver>> = { qemu: qemuDriver };

export function hypervisorDriver(kind: HypervisorKind): HypervisorDriver {
  const d = DRIVERS[kind];
  if (!d)
    throw new KataError('E_UNSUPPORTED', `there is no ${kind} driver in this runtime (drivers: ${Object.keys(DRIVERS).join(', ')})`, {
      kind,
    });
  return d;
}
