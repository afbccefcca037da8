/**
 * Kata PCI paths ("02/00": slot 02 on the root bus, then slot 00 on the bus behind that bridge or
 * root port) resolved through sysfs, both ways. The sysfs root is a parameter so tests can point it at
 * a fake tree.
 */
import { fsp } from './builtins.js';
import { join } from 'node:path';
import { AgentError } from './protocol.js';

const BDF = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;

/** "02/00" -> [{slot: 0x02, fn: 0}, {slot: 0x00, fn: 0}]; a hop may carry ".F" for the function. */
export function parsePciPath(path: string): { slot: number; fn: number }[] {
  const hops = path.trim().split('/');
  if (hops.length === 0 || hops.some((h) => !/^[0-9a-f]{1,2}(\.[0-7])?$/i.test(h))) {
    throw new AgentError('E_INVALID_ARGUMENT', `PCI path "${path}" is not of the form "SS/SS..." (hex slots, e.g. "02/00")`);
  }
  return hops.map((h) => {
    const [s, f] = h.split('.');
    const slot = parseInt(s!, 16);
    if (slot > 0x1f) throw new AgentError('E_INVALID_ARGUMENT', `PCI path "${path}": slot ${s} is above 1f`);
    return { slot, fn: f === undefined ? 0 : Number(f) };
  });
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** The sysfs directory of the device at a PCI path, or undefined when (not yet) present. */
export async function pciDeviceDir(sysfs: string, path: string): Promise<string | undefined> {
  const hops = parsePciPath(path);
  let dir = join(sysfs, 'devices', 'pci0000:00');
  for (const hop of hops) {
    const want = `:${hex2(hop.slot)}.${hop.fn}`;
    let entries: string[];
    try {
      entries = await fsp().readdir(dir);
    } catch {
      return undefined;
    }
    const next = entries.find((e) => BDF.test(e) && e.endsWith(want));
    if (!next) return undefined;
    dir = join(dir, next);
  }
  return dir;
}

/** Names under `<dev>/<kind>/` or `<dev>/virtioN/<kind>/` (virtio devices hang their net/block child below virtioN). */
export async function childrenOfKind(devDir: string, kind: 'net' | 'block'): Promise<string[]> {
  const direct = await fsp()
    .readdir(join(devDir, kind))
    .catch(() => [] as string[]);
  if (direct.length > 0) return direct;
  const entries = await fsp()
    .readdir(devDir)
    .catch(() => [] as string[]);
  for (const e of entries.filter((x) => /^virtio\d+$/.test(x))) {
    const below = await fsp()
      .readdir(join(devDir, e, kind))
      .catch(() => [] as string[]);
    if (below.length > 0) return below;
  }
  return [];
}

/** The PCI path of a sysfs device (e.g. /sys/class/net/eth0/device), or "" when it is not on PCI bus 0000:00. */
export async function pciPathOf(sysfsDeviceLink: string): Promise<string> {
  let real: string;
  try {
    real = await fsp().realpath(sysfsDeviceLink);
  } catch {
    return '';
  }
  const parts = real.split('/');
  const root = parts.indexOf('pci0000:00');
  if (root < 0) return '';
  const slots: string[] = [];
  for (const p of parts.slice(root + 1)) {
    const m = BDF.exec(p);
    if (!m) break;
    slots.push(m[4] === '0' ? m[3]! : `${m[3]}.${m[4]}`);
  }
  return slots.join('/');
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `probe` every intervalMs until it returns a value or timeoutMs passes (then E_DEVICE_TIMEOUT with `what`). */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) throw new AgentError('E_DEVICE_TIMEOUT', `${what} did not appear within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}
