/** Text forms of CLI results (the --json forms are the objects themselves). */
import type { SandboxView } from '../sandbox/view.js';

/** C0 and C1 controls, DEL and the bidirectional overrides; a tab (and a newline, when kept) is text. */
function isControl(c: number, keepNewlines: boolean): boolean {
  if (c === 0x09 || (c === 0x0a && keepNewlines)) return false;
  return (
    c < 0x20 ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0x061c ||
    c === 0x200e ||
    c === 0x200f ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2066 && c <= 0x2069)
  );
}

/**
 * Text as it may reach a terminal: every control character as a visible escape (\x1b, \u{202e}),
 * so a string a guest made (a mount source, an interface name, an agent's error) cannot move the
 * cursor, retitle the window, clear the screen or reorder what is shown. The CLI passes all its text
 * output through this; --json output is not touched (JSON escapes what it must). With
 * `keepNewlines` false the text is one line: a newline inside it is escaped too.
 */
export function printable(s: string, keepNewlines = true): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!isControl(c, keepNewlines)) continue;
    out += `${s.slice(from, i)}${c < 0x100 ? `\\x${c.toString(16).padStart(2, '0')}` : `\\u{${c.toString(16)}}`}`;
    from = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}

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
  // One line each: a line break inside a value (a guest's) is escaped too.
  return o.map((l) => printable(l, false));
}
