/**
 * The one hotplug sequence every resource kind uses on a running sandbox: journal the intent,
 * attach (host side), journal the result, hot-plug its devices, let the plugin complete its guest
 * descriptors from where the hypervisor put them (PCI path, SCSI address), persist, tell the agent.
 * Each finished step pushes its inverse, so a failure anywhere leaves nothing. `iface add` uses it
 * now, `volume add` next. Unplug is the inverse: agent first, then the devices, then the host side.
 */
import { checkpoint, type Attached } from '../../host/plugin.js';
import { UndoStack } from '../../host/undo.js';
import type { SandboxCore } from './core.js';
import type { ConfigOf, DataOf, Plugins, ResourceKind } from './resources.js';

/** Kinds that can be added to a running sandbox. */
export type HotKind = Extract<ResourceKind, 'endpoint' | 'volume'>;

export async function hotplugResource<K extends HotKind>(
  sb: SandboxCore,
  kind: K,
  id: string,
  config: ConfigOf<K>,
  guestStep: (attached: Attached<DataOf<K>>) => Promise<void>,
): Promise<Attached<DataOf<K>>> {
  const plugin: Plugins[K] = sb.plugins[kind];
  const hv = sb.plugins.vm.hypervisor;
  const undo = new UndoStack(sb.log);
  const step = (name: string): Promise<void> => checkpoint(sb.ctx, `hotplug.${kind}.${name}`);
  return undo.guard(async () => {
    await sb.journal.intend(id, kind, config);
    undo.push(`forget ${id}`, () => sb.journal.forget(id));
    await step('intent');
    let att = await plugin.attach(sb.ctx, config);
    undo.push(`detach ${id}`, () => plugin.detach(sb.ctx, att));
    await step('attached');
    // Journalled before the VM sees it, so a crash from here on is cleaned from the state.
    await sb.journal.done(id, kind, att);
    await step('journalled');
    for (const spec of att.devices) {
      const placed = await hv.hotplug(spec);
      undo.push(`unplug ${spec.id}`, () => hv.unplug(spec.id));
      if (plugin.complete) att = plugin.complete(att, placed);
    }
    await step('plugged');
    await sb.journal.update(id, kind, att);
    await step('completed');
    await guestStep(att);
    return att;
  });
}

export async function unplugResource<K extends HotKind>(
  sb: SandboxCore,
  kind: K,
  id: string,
  attached: Attached<DataOf<K>>,
  opts: { timeoutMs?: number } = {},
): Promise<void> {
  const hv = sb.plugins.vm.hypervisor;
  // A device the guest does not release ends in E_TIMEOUT: the record stays, so the call can be retried.
  for (const d of attached.devices) await hv.unplug(d.id, opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {});
  const plugin: Plugins[K] = sb.plugins[kind];
  await plugin.detach(sb.ctx, attached);
  await sb.journal.forget(id);
}
