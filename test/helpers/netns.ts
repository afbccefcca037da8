import { randomBytes } from 'node:crypto';
import { run } from '../../host/exec.js';
import { createNetns, deleteNetns, type NetnsRef } from '../../host/netns.js';

/** Every namespace a test makes starts with this prefix; .ci/run fails if any is left. */
const TEST_PREFIX = 'krt-';

export function uniqueName(tag: string): string {
  return `${TEST_PREFIX}${tag}-${randomBytes(3).toString('hex')}`;
}

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/** A fresh namespace deleted when the test ends. */
export async function tempNetns(t: Teardownable, tag = 'ns'): Promise<NetnsRef> {
  const ns = await createNetns(uniqueName(tag));
  t.teardown(() => deleteNetns(ns));
  return ns;
}

/**
 * A pod-like namespace as a CNI plugin would leave it: a veth pair with `ifname` (and an address)
 * in `pod`, and its peer with the gateway address in `host` (another test namespace).
 */
export async function vethPair(
  pod: NetnsRef,
  host: NetnsRef,
  opts: { ifname?: string; peer?: string; podAddr?: string; hostAddr?: string; mtu?: number; mac?: string } = {},
): Promise<{ ifname: string; peer: string }> {
  const ifname = opts.ifname ?? 'eth0';
  const peer = opts.peer ?? `veth${randomBytes(3).toString('hex')}`;
  const podAddr = opts.podAddr ?? '10.77.0.2/24';
  const hostAddr = opts.hostAddr ?? '10.77.0.1/24';
  const mtu = String(opts.mtu ?? 1500);
  await run('ip', ['-n', host.name!, 'link', 'add', peer, 'mtu', mtu, 'type', 'veth', 'peer', 'name', ifname, 'netns', pod.name!]);
  await run('ip', ['-n', host.name!, '-batch', '-'], { input: `link set ${peer} up\naddr add ${hostAddr} dev ${peer}\nlink set lo up\n` });
  const podLines = [
    `link set ${ifname} mtu ${mtu}`,
    ...(opts.mac ? [`link set ${ifname} address ${opts.mac}`] : []),
    `addr add ${podAddr} dev ${ifname}`,
    `link set ${ifname} up`,
    'link set lo up',
  ];
  await run('ip', ['-n', pod.name!, '-batch', '-'], { input: `${podLines.join('\n')}\n` });
  return { ifname, peer };
}

export async function links(ns: NetnsRef): Promise<
  {
    ifname: string;
    mtu: number;
    address: string;
    linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
    flags: string[];
  }[]
> {
  return JSON.parse((await run('ip', ['-n', ns.name!, '-j', '-d', 'link', 'show'])).stdout);
}

export async function tcJson(ns: NetnsRef, args: string[]): Promise<Record<string, unknown>[]> {
  const out = (await run('tc', ['-n', ns.name!, '-j', ...args])).stdout.trim();
  return out ? JSON.parse(out) : [];
}
