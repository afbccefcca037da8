import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { silentLogger } from '../../../host/log.js';
import { CoprocessNetlink, SpawnNetlink, type BatchOutcome, type Netlink, type Tool } from '../../../host/netlink.js';
import type { NetnsRef } from '../../../host/netns.js';
import type { FaultHook, PluginContext } from '../../../host/plugin.js';
import { Sysfs } from '../../../host/sysfs.js';
import { sleep } from '../../../host/retry.js';
import { tempNetns, vethPair } from '../../helpers/netns.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export type NetlinkKind = 'spawn' | 'coprocess';

export function makeNetlink(t: Teardownable, kind: NetlinkKind): Netlink {
  const nl = kind === 'spawn' ? new SpawnNetlink() : new CoprocessNetlink(500);
  t.teardown(() => nl.close());
  return nl;
}

async function tempRunDir(t: Teardownable): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'krt-run-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** A PluginContext on a test namespace: silent logger, real sysfs, a temp runDir. */
export async function makeCtx(
  t: Teardownable,
  netns: NetnsRef | undefined,
  opts: { netlink?: Netlink; kind?: NetlinkKind; faults?: FaultHook; sysfs?: Sysfs } = {},
): Promise<PluginContext> {
  return {
    sandboxId: 'krt-sandbox',
    netns,
    log: silentLogger(),
    netlink: opts.netlink ?? makeNetlink(t, opts.kind ?? 'spawn'),
    sysfs: opts.sysfs ?? new Sysfs(),
    runDir: await tempRunDir(t),
    ...(opts.faults ? { faults: opts.faults } : {}),
  };
}

/** A pod namespace with eth0 (veth, peer in a "host" test namespace), as a CNI plugin leaves it. */
export async function podWithVeth(
  t: Teardownable,
  opts: { mtu?: number; podAddr?: string; hostAddr?: string } = {},
): Promise<{ pod: NetnsRef; host: NetnsRef; ifname: string; peer: string }> {
  const host = await tempNetns(t, 'host');
  const pod = await tempNetns(t, 'pod');
  const { ifname, peer } = await vethPair(pod, host, opts);
  await waitLinkLocal(pod, ifname);
  return { pod, host, ifname, peer };
}

/**
 * The kernel adds the IPv6 link-local once the carrier is up, asynchronously: wait for it so that
 * snapshots taken by a test do not race with it.
 */
export async function waitLinkLocal(ns: NetnsRef, ifname: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!(await ipIn(ns, '-6', 'addr', 'show', 'dev', ifname)).includes('fe80::') && Date.now() < end) await sleep(20);
}

export async function ipIn(ns: NetnsRef, ...args: string[]): Promise<string> {
  return (await run('ip', ['-n', ns.name!, ...args])).stdout;
}

export async function ipBatch(ns: NetnsRef, lines: string[]): Promise<void> {
  await run('ip', ['-n', ns.name!, '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

/**
 * Everything in a namespace that an endpoint attach may change, normalised for comparison: links
 * (name, kind, MAC, MTU, up, addresses), routes of all tables, qdiscs, filters on every ingress.
 */
export async function snapshot(ns: NetnsRef): Promise<Record<string, unknown>> {
  const links = JSON.parse(await ipIn(ns, '-j', '-d', 'addr', 'show')) as {
    ifname: string;
    address?: string;
    mtu: number;
    flags: string[];
    linkinfo?: { info_kind?: string };
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  const routes = JSON.parse(await ipIn(ns, '-j', 'route', 'show', 'table', 'all')) as Record<string, unknown>[];
  const qdiscs = JSON.parse((await run('tc', ['-n', ns.name!, '-j', 'qdisc', 'show'])).stdout || '[]') as {
    dev: string;
    kind: string;
    handle: string;
  }[];
  const filters: Record<string, unknown> = {};
  for (const q of qdiscs.filter((q) => q.kind === 'ingress')) {
    filters[q.dev] = JSON.parse(
      (await run('tc', ['-n', ns.name!, '-j', 'filter', 'show', 'dev', q.dev, 'parent', 'ffff:'])).stdout || '[]',
    ).map(
      (f: { pref?: number; kind?: string; options?: { actions?: { to_dev?: string }[] } }) =>
        `${f.pref}/${f.kind}/${(f.options?.actions ?? []).map((a) => a.to_dev).join(',')}`,
    );
  }
  return {
    links: links
      .map((l) => ({
        name: l.ifname,
        kind: l.linkinfo?.info_kind ?? '',
        mac: l.address,
        mtu: l.mtu,
        up: l.flags.includes('UP'),
        addrs: (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`).sort(),
      }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    // IPv6 local-table host routes follow DAD progress, not anything an attach does: left out.
    routes: routes
      .filter((r) => !(r.table === 'local' && r.type === 'local' && String(r.dst).includes(':')))
      .map((r) => {
        const { expires: _e, ...rest } = r as Record<string, unknown>;
        return JSON.stringify(rest);
      })
      .sort(),
    qdiscs: qdiscs.map((q) => `${q.dev}/${q.kind}/${q.handle}`).sort(),
    filters,
  };
}

export async function listDir(d: string): Promise<string[]> {
  try {
    return (await readdir(d)).sort();
  } catch {
    return [];
  }
}

/** Records every batch and can rewrite chosen lines into ones that really fail (the other lines really run). */
export class RewritingNetlink implements Netlink {
  readonly calls: { tool: Tool; lines: string[] }[] = [];
  /** Return a replacement line (and optionally the message to report) for a line to fail, else undefined. */
  rewrite: (tool: Tool, line: string, callNo: number) => { line: string; message?: string } | undefined = () => undefined;

  constructor(private readonly inner: Netlink) {}

  async batch(tool: Tool, ns: NetnsRef | undefined, lines: readonly string[]): Promise<BatchOutcome> {
    const callNo = this.calls.length;
    this.calls.push({ tool, lines: [...lines] });
    const subs = lines.map((l) => this.rewrite(tool, l, callNo));
    const out = await this.inner.batch(
      tool,
      ns,
      lines.map((l, i) => subs[i]?.line ?? l),
    );
    return out.map((o, i) => (subs[i] ? (subs[i]!.message ?? o ?? 'injected failure') : o));
  }

  json<T>(tool: Tool, ns: NetnsRef | undefined, args: readonly string[]): Promise<T> {
    return this.inner.json<T>(tool, ns, args);
  }

  release(ns: NetnsRef | undefined): Promise<void> {
    return this.inner.release(ns);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A line that fails in the kernel without side effects, for each tool. */
export const FAILING_LINE: Record<Tool, string> = { ip: 'link set dev krt-absent0 up', tc: 'qdisc add dev krt-absent0 ingress' };
