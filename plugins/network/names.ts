import { randomBytes } from 'node:crypto';

/** Suffix of every host device this suite creates for an endpoint (as Kata: tap<idx>_kata). */
const KATA_SUFFIX = '_kata';

/** Host tap / macvtap name for endpoint `index`: Kata's tap<idx>_kata. */
export function tapName(index: number): string {
  return `tap${index}${KATA_SUFFIX}`;
}

/** Hypervisor device id for endpoint `index` (QEMU netdev/device ids derive from it). */
export function netDeviceId(index: number): string {
  return `net${index}`;
}

/**
 * A short unique interface name used while a device is being created: it is created under this name
 * and renamed in the same batch, so a batch line can never act on a pre-existing device of the
 * final name (with `-batch -force` every line runs even when an earlier one failed).
 */
export function scratchIfName(): string {
  return `kr-tmp${randomBytes(4).toString('hex')}`; // 14 bytes
}

/** A random locally administered unicast MAC (Kata's generateRandomPrivateMacAddr). */
export function randomPrivateMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! | 0x02) & 0xfe;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Priority of the redirect filters this suite adds, so that detach and check find exactly ours. */
export const REDIRECT_FILTER_PREF = 0x4b41; // "KA" = 19265
