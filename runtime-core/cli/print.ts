/** Text forms of CLI results (the --json forms are the objects themselves). */
import type { SandboxView } from '../sandbox/view.js';

interface GuestView {
  interfaces?: { name: string; hwAddr: string; mtu: number; IPAddresses: { address: string; mask: string }[] }[];
  routes?: { dest: string; gateway: string; device: string }[];
  mounts?: { source: string; mount_point: string; fstype: string }[];
  error?: string;
}

export function sandboxLines(v: SandboxView & { guest?: unknown; supervisor?: string }): string[] {
  const o: string[] = [];
  o.push(`sandbox ${v.id}: ${v.state}${v.supervisor ? ` (supervisor ${v.supervisor})` : ''}${v.accel ? `, accel ${v.accel}` : ''}`);
  if (v.error) o.push(`  error: ${v.error.code}: ${v.error.message}`);
  if (v.netns) o.push(`  netns: ${v.netns.name ?? v.netns.path}${v.netns.created ? ' (created by the sandbox)' : ''}`);
  const pids = Object.entries(v.pids);
  if (pids.length) o.push(`  pids: ${pids.map(([k, p]) => `${k}=${p}`).join(' ')}`);
  for (const e of v.endpoints)
    o.push(`  endpoint: ${e.name} ${e.type}${e.tap ? ` -> ${e.tap}` : ''} mac ${e.mac} mtu ${e.mtu} ${e.addresses.join(' ')}`);
  for (const s of v.shares) o.push(`  share: ${s.tag} ${s.hostDir} -> ${s.guestMountPoint}`);
  for (const s of v.volumes ?? []) o.push(`  volume: ${s.source} -> ${s.guestPath}${s.readonly ? ' (read-only)' : ''}`);
  const g = v.guest as GuestView | undefined;
  if (g?.error) o.push(`  guest: ${g.error}`);
  for (const i of g?.interfaces ?? [])
    o.push(`  guest interface: ${i.name} ${i.hwAddr} mtu ${i.mtu} ${i.IPAddresses.map((a) => `${a.address}/${a.mask}`).join(' ')}`);
  for (const r of g?.routes ?? []) o.push(`  guest route: ${r.dest || 'default'}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.device}`);
  for (const m of g?.mounts ?? []) o.push(`  guest mount: ${m.source} on ${m.mount_point} (${m.fstype})`);
  return o;
}
