import { KataError } from '../../../host/errors.js';
import { checkpoint, type PluginContext } from '../../../host/plugin.js';
import type { UndoStack } from '../../../host/undo.js';

/**
 * Physical endpoints: a NIC or VF (a link whose bus info is a PCI address) is handed to the VM by
 * binding it to vfio-pci as Kata does (`BindDevicetoVFIO`): write "vfio-pci" to driver_override,
 * unbind from the current driver, write the address to drivers_probe. Detach restores the original
 * driver and driver_override. All through ctx.sysfs, whose root tests point at a tree in a temp dir.
 */

const BDF = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;
const VFIO_DRIVER = 'vfio-pci';

export interface PciBinding {
  bdf: string;
  /** Driver bound before (undefined: none). */
  originalDriver?: string;
  /** driver_override content before ("(null)" when unset). */
  originalOverride?: string;
  /** Whether attach changed the binding (false when it was already on vfio-pci). */
  bound: boolean;
}

function checkBdf(bdf: string): string {
  if (!BDF.test(bdf))
    throw new KataError('E_INVALID_ARGUMENT', `PCI address ${JSON.stringify(bdf)} is not of the form 0000:00:00.0`, { bdf });
  return bdf;
}

export async function pciDriver(ctx: Pick<PluginContext, 'sysfs'>, bdf: string): Promise<string | undefined> {
  return ctx.sysfs.linkName('bus/pci/devices', checkBdf(bdf), 'driver');
}

export async function bindToVfio(ctx: PluginContext, bdf: string, undo: UndoStack): Promise<PciBinding> {
  checkBdf(bdf);
  const dev = ['bus/pci/devices', bdf];
  if (!(await ctx.sysfs.exists(...dev))) {
    throw new KataError('E_SYSFS', `PCI function ${bdf} not found under ${ctx.sysfs.path(...dev)}`, { bdf });
  }
  const originalDriver = await pciDriver(ctx, bdf);
  const originalOverride = await ctx.sysfs.tryRead(...dev, 'driver_override');
  const binding: PciBinding = {
    bdf,
    ...(originalDriver ? { originalDriver } : {}),
    ...(originalOverride !== undefined ? { originalOverride } : {}),
    bound: false,
  };
  if (originalDriver === VFIO_DRIVER) return binding;
  // From here on the function may be off its driver: restore whatever happened.
  undo.push(`vfio bind ${bdf}`, () => restorePciDriver(ctx, { ...binding, bound: true }));
  await checkpoint(ctx, 'physical:driver-override');
  await ctx.sysfs.write(VFIO_DRIVER, ...dev, 'driver_override');
  if (originalDriver) {
    await checkpoint(ctx, 'physical:unbind');
    await ctx.sysfs.write(bdf, 'bus/pci/drivers', originalDriver, 'unbind');
  }
  await checkpoint(ctx, 'physical:probe');
  await ctx.sysfs.write(bdf, 'bus/pci/drivers_probe');
  binding.bound = true;
  return binding;
}

/** Give the function back to its original driver and driver_override; a vanished function is fine. */
export async function restorePciDriver(ctx: Pick<PluginContext, 'sysfs'>, b: PciBinding): Promise<void> {
  if (!b.bound) return;
  const dev = ['bus/pci/devices', checkBdf(b.bdf)];
  if (!(await ctx.sysfs.exists(...dev))) return;
  const current = await pciDriver(ctx, b.bdf);
  const unset = (v: string | undefined): string => (v === undefined || v === '' || v === '(null)' ? '(null)' : v);
  if (current === b.originalDriver && unset(await ctx.sysfs.tryRead(...dev, 'driver_override')) === unset(b.originalOverride)) return;
  await ctx.sysfs.write(b.originalDriver ?? '\n', ...dev, 'driver_override');
  if (current && current !== b.originalDriver) await ctx.sysfs.write(b.bdf, 'bus/pci/drivers', current, 'unbind');
  if (b.originalDriver && current !== b.originalDriver) await ctx.sysfs.write(b.bdf, 'bus/pci/drivers_probe');
  const ov = unset(b.originalOverride) === '(null)' ? '\n' : b.originalOverride!;
  await ctx.sysfs.write(ov, ...dev, 'driver_override');
}
