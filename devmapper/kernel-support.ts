/**
 * Whether this kernel can do thin provisioning, found cheaply: /proc/misc lists "device-mapper"
 * once dm_mod is there, /sys/module/dm_thin_pool once the target is (a built-in target: `dmsetup
 * targets` lists it). When either is missing a
 * quiet `modprobe dm_thin_pool` is tried once (what the kernel would do on the first thin-pool
 * table anyway); if they are still missing, E_KERNEL_FEATURE says how to get them.
 */
import { readFile, stat } from 'node:fs/promises';
import { KataError } from '../host/errors.js';
import { run } from '../host/exec.js';
import { dmTargets } from './dmsetup.js';

const DM_KERNEL_FIX =
  'device-mapper (dm_mod, dm_thin_pool) is not available in this kernel: modprobe dm_thin_pool, or run it in the lab VM: scripts/lab.sh --modules dm_mod,dm_thin_pool -- ...';

let known: Promise<void> | undefined;

async function present(): Promise<{ dm: boolean; thin: boolean }> {
  const misc = await readFile('/proc/misc', 'utf8').catch(() => '');
  const dm = /^\s*\d+\s+device-mapper$/m.test(misc);
  const thin = await stat('/sys/module/dm_thin_pool').then(
    () => true,
    () => false,
  );
  return { dm, thin };
}

async function check(): Promise<void> {
  let p = await present();
  if (p.dm && p.thin) return;
  await run('modprobe', ['-q', 'dm_thin_pool'], { reject: false, timeoutMs: 15_000 }).catch(() => undefined);
  p = await present();
  if (p.dm && p.thin) return;
  // Built into the kernel, the target has no /sys/module entry: ask device-mapper itself.
  if (p.dm && (await dmTargets().catch(() => [])).some((t) => t.name === 'thin-pool')) return;
  const missing = [...(p.dm ? [] : ['dm_mod (no device-mapper in /proc/misc)']), ...(p.thin ? [] : ['dm_thin_pool'])];
  throw new KataError('E_KERNEL_FEATURE', `${DM_KERNEL_FIX} (missing: ${missing.join(', ')})`, { missing });
}

/** Resolves when device-mapper thin provisioning is usable; E_KERNEL_FEATURE when not. Checked once per process. */
export function requireThinProvisioning(): Promise<void> {
  known ??= check().catch((e) => {
    known = undefined;
    throw e;
  });
  return known;
}
