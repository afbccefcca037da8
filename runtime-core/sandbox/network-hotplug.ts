/**
 * Network hotplug (Kata's AddInterface / RemoveInterface, `kata-runtime kata-network add-iface`):
 * a link that appeared in the sandbox's namespace after start (the Docker 26+ case,
 * kata-containers#9340), or a new tap made from an interface description, through the generic
 * hotplug sequence (hotplug.ts); then the agent configures it by its PCI path.
 */
import type { Interface } from '../../host/agent-types.js';
import { KataError } from '../../host/errors.js';
import { validateMac } from '../../host/names.js';
import { readLink, readLinks } from '../../plugins/network/link-info.js';
import { tapName } from '../../plugins/network/names.js';
import type { EndpointConfig } from '../../plugins/network/plugin.js';
import { findPreattached } from '../../plugins/network/preattached.js';
import { scanNetns } from '../../plugins/network/scan.js';
import type { NetworkOptions } from './assemble.js';
import { hotplugResource, unplugResource } from './hotplug.js';
import type { Sandbox } from './sandbox.js';

export type InterfaceRequest =
  | { link: string }
  | { interface: { name: string; hwAddr?: string; mtu?: number; IPAddresses?: Interface['IPAddresses']; raw_flags?: number } };

/** The next free endpoint index (names tap<idx>_kata; never reused while the sandbox lives). */
function nextEndpointIndex(sb: Sandbox): number {
  const used = sb.journal.state.resources.flatMap((r) =>
    r.kind !== 'endpoint'
      ? []
      : r.phase === 'done'
        ? [r.data.resources.index]
        : [r.config.from === 'link' ? r.config.index : (r.config.index ?? 0)],
  );
  return used.length === 0 ? 0 : Math.max(...used) + 1;
}

/** Addresses need a prefix length; the agent would otherwise apply /32 and the view say /undefined. */
function checkAddresses(addrs: Interface['IPAddresses'] | undefined): void {
  for (const a of addrs ?? []) {
    const n = Number(a.mask);
    const max = a.family === 1 ? 128 : 32;
    if (typeof a.mask !== 'string' || !/^\d{1,3}$/.test(a.mask) || n > max) {
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `address ${a.address}: mask must be a prefix length 0..${max} as a string (got ${JSON.stringify(a.mask)})`,
        { address: a.address },
      );
    }
  }
}

/** A MAC the sandbox already uses would make the agent reconfigure that interface instead (it matches by MAC). */
async function checkMacFree(sb: Sandbox, mac: string): Promise<void> {
  const m = mac.toLowerCase();
  const ours = sb.journal.records('endpoint').find((r) => (r.data.guest.interfaces?.[0]?.hwAddr ?? '').toLowerCase() === m);
  if (ours)
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `MAC ${mac} is already used by interface ${ours.data.guest.interfaces?.[0]?.name} of sandbox ${sb.id}; give another hwAddr`,
      { mac },
    );
  const guest = await sb.agent.listInterfaces();
  const there = guest.Interfaces.find((i) => i.hwAddr.toLowerCase() === m);
  if (there)
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `MAC ${mac} is already used by guest interface ${there.name} of sandbox ${sb.id}; give another hwAddr`,
      { mac },
    );
}

export function addInterface(sb: Sandbox, req: InterfaceRequest, opts: NetworkOptions): Promise<Interface> {
  return sb.serialize(async () => {
    sb.requireRunning('add an interface');
    const index = nextEndpointIndex(sb);
    let config: EndpointConfig;
    if ('link' in req) {
      const link = await readLink(sb.ctx, req.link);
      if (sb.journal.records('endpoint').some((r) => r.data.resources.link === link.name)) {
        throw new KataError('E_INVALID_ARGUMENT', `link ${link.name} of sandbox ${sb.id} is already attached`, { link: link.name });
      }
      if (link.name === 'lo')
        throw new KataError('E_INVALID_ARGUMENT', `link lo of sandbox ${sb.id} is the loopback device; it cannot be an endpoint`, {
          link: 'lo',
        });
      await checkMacFree(sb, link.mac);
      const pre = (await findPreattached(sb.ctx, await readLinks(sb.ctx), [link.name])).get(link.name);
      config = {
        from: 'link',
        link,
        index,
        model: opts.model,
        queues: opts.queues,
        vhost: opts.vhost,
        ...(pre ? { preattached: pre } : {}),
      };
    } else {
      const i = req.interface;
      checkAddresses(i.IPAddresses);
      if (i.hwAddr !== undefined) await checkMacFree(sb, validateMac(i.hwAddr, 'hwAddr'));
      config = {
        from: 'tap',
        name: tapName(index),
        guestName: i.name,
        index,
        queues: opts.queues,
        vhost: opts.vhost,
        ...(i.hwAddr ? { mac: i.hwAddr } : {}),
        ...(i.mtu ? { mtu: i.mtu } : {}),
        ...(i.IPAddresses ? { addresses: i.IPAddresses } : {}),
        ...(i.raw_flags !== undefined ? { rawFlags: i.raw_flags } : {}),
      };
    }
    const id = `net:${'link' in req ? req.link : req.interface.name}`;
    if (sb.journal.has(id)) throw new KataError('E_INVALID_ARGUMENT', `sandbox ${sb.id} already has an interface ${id.slice(4)}`, { id });
    let applied: Interface | undefined;
    await hotplugResource(sb, 'endpoint', id, config, async (att) => {
      const iface = att.guest.interfaces?.[0];
      if (!iface || att.devices.length === 0)
        throw new KataError('E_UNSUPPORTED', `interface ${index}: the endpoint has no device to hot-plug (model none?)`);
      applied = await sb.agent.updateInterface(iface);
      if ('link' in req) {
        // Routes of the new link (the whole table is sent again: the agent replaces what exists).
        const scan = await scanNetns(sb.ctx);
        const routes = scan.routes.filter((r) => r.device === iface.name);
        if (routes.length > 0) await sb.agent.updateRoutes(routes);
      }
    });
    return applied!;
  });
}

/** Hot-remove an interface added at start or later, by guest name or MAC (Kata relies on the guest kernel to drop it). */
export function removeInterface(sb: Sandbox, nameOrMac: string): Promise<void> {
  return sb.serialize(async () => {
    sb.requireRunning('remove an interface');
    const key = nameOrMac.toLowerCase();
    const rec = sb.journal.records('endpoint').find((r) => {
      const i = r.data.guest.interfaces?.[0];
      return i !== undefined && (i.name === nameOrMac || i.hwAddr.toLowerCase() === key);
    });
    if (!rec) {
      throw new KataError(
        'E_LINK_NOT_FOUND',
        `sandbox ${sb.id} has no interface named or with MAC ${nameOrMac}; see \`kata-resources iface list ${sb.id}\``,
        {
          iface: nameOrMac,
        },
      );
    }
    await unplugResource(sb, 'endpoint', rec.id, rec.data);
  });
}
