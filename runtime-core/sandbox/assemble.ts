/**
 * The steps of `sandbox up`, in order: the pod's cgroup when one is given (the supervisor joins it,
 * so everything below starts inside), the namespace (taken, or created as a journalled resource),
 * the scan, an endpoint per link, the virtio-fs share and the guest kit side by side, the VM with
 * every device cold-plugged, the agent, then interfaces, routes, neighbours and storages. Each
 * resource's intent is journalled before it is made and its result after, so a crash at any point
 * can be cleaned from the state; a failure is thrown after every parallel part has settled, and the
 * caller undoes the journal.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Interface, Storage } from '../../host/agent-types.js';
import type { DeviceSpec } from '../../host/device-specs.js';
import { KataError } from '../../host/errors.js';
import { mark } from '../../host/marks.js';
import { netnsIdentity } from '../../host/netns.js';
import { checkpoint } from '../../host/plugin.js';
import { scanNetns } from '../../plugins/network/scan.js';
import type { ScanResult } from '../../plugins/network/types.js';
import { AgentClient } from '../agent/client.js';
import { applyThroughExec, type BootApply } from './apply-through-exec.js';
import type { SandboxConfig } from '../config/types.js';
import { shareAtBootParams } from '../guest-kit/share-param.js';
import type { VmResources } from '../hypervisor/hypervisor.js';
import { sandboxCgroupPath } from './cgroup-resource.js';
import type { GuestImage } from './guest-image.js';
import type { SandboxCore } from './core.js';

/** The named steps of `up`, in order; fault-injection tests fail each in turn. */
export const STEPS = [
  'netns',
  'scan',
  'endpoint',
  'virtiofs',
  'guest-kit',
  'vm',
  'agent',
  'interfaces',
  'routes',
  'neighbours',
  'storages',
] as const;
type Step = (typeof STEPS)[number];

/** How endpoints are attached: from the configuration (the vhost answer decided here, once). */
export interface NetworkOptions {
  model: SandboxConfig['runtime']['internetworkingModel'];
  queues: number;
  vhost: boolean;
}

export function networkOptions(cfg: SandboxConfig): NetworkOptions {
  return {
    model: cfg.runtime.internetworkingModel,
    queues: cfg.hypervisor.networkQueues,
    vhost: !cfg.hypervisor.disableVhostNet && existsSync('/dev/vhost-net'),
  };
}

export interface AssembleOptions {
  config: SandboxConfig;
  /** Create the namespace (kr-<id>) rather than take the one in the context. */
  createNetns: boolean;
  guest: () => Promise<GuestImage>;
  sharedRoot: string;
  progress: (msg: string) => void;
  /** The pod's cgroup (OCI cgroupsPath): the supervisor joins it first (cgroup-resource.ts). */
  cgroupPath?: string;
}

const ms = (t0: bigint): number => Number((process.hrtime.bigint() - t0) / 1000n) / 1000;

async function step<T>(sb: SandboxCore, name: Step, fn: () => Promise<T>): Promise<T> {
  await checkpoint(sb.ctx, `sandbox.${name}`);
  const t0 = process.hrtime.bigint();
  mark(`${name}.start`);
  const r = await fn();
  mark(`${name}.end`);
  sb.timings[name] = (sb.timings[name] ?? 0) + ms(t0);
  return r;
}

async function attachNetwork(sb: SandboxCore, cfg: SandboxConfig): Promise<{ scan: ScanResult; interfaces: Interface[] }> {
  const scan = await step(sb, 'scan', () => scanNetns(sb.ctx));
  const interfaces: Interface[] = [];
  if (cfg.runtime.internetworkingModel !== 'none' || !cfg.runtime.disableNewNetns) {
    const net = networkOptions(cfg);
    for (const [i, e] of scan.endpoints.entries()) {
      const id = `net:${e.link.name}`;
      const config = {
        from: 'link' as const,
        link: e.link,
        type: e.type,
        index: i,
        model: net.model,
        queues: net.queues,
        vhost: net.vhost,
        ...(e.preattached ? { preattached: e.preattached } : {}),
      };
      if (e.preattached)
        sb.log.info({ link: e.link.name, tap: e.preattached.tap }, 'a CNI plugin already joined a tap to this link: using it');
      await sb.journal.intend(id, 'endpoint', config);
      const att = await step(sb, 'endpoint', () => sb.plugins.endpoint.attach(sb.ctx, config));
      await sb.journal.done(id, 'endpoint', att);
      interfaces.push(...(att.guest.interfaces ?? []));
    }
  }
  return { scan, interfaces };
}

/** The virtio-fs share's configuration from the sandbox's (preflight.ts checks the same). */
export function virtiofsConfigOf(cfg: SandboxConfig, sharedRoot: string) {
  const q = cfg.hypervisor;
  return {
    daemonPath: q.virtioFsDaemon,
    cache: q.virtioFsCache,
    extraArgs: q.virtioFsExtraArgs,
    queueSize: q.virtioFsQueueSize,
    root: sharedRoot,
    volumeRoots: cfg.runtime.volumeRoots,
    rwShareReachable: cfg.runtime.rwShareReachable,
  };
}

async function attachShare(sb: SandboxCore, o: AssembleOptions): Promise<{ devices: DeviceSpec[]; storages: Storage[] }> {
  if (o.config.hypervisor.sharedFs !== 'virtio-fs') return { devices: [], storages: [] };
  const config = virtiofsConfigOf(o.config, o.sharedRoot);
  await sb.journal.intend('virtiofs', 'virtiofs', config);
  const att = await step(sb, 'virtiofs', () => sb.plugins.virtiofs.attach(sb.ctx, config));
  await sb.journal.done('virtiofs', 'virtiofs', att);
  if (att.resources.daemon.daemon) await sb.recordProcess('virtiofsd', att.resources.daemon.daemon);
  return { devices: att.devices, storages: att.guest.storages ?? [] };
}

/** The supervisor joins the sandbox's cgroup before it starts anything (every daemon is born there). */
async function joinCgroup(sb: SandboxCore, o: AssembleOptions & { cgroupPath: string }): Promise<void> {
  await checkpoint(sb.ctx, 'sandbox.cgroup');
  const t0 = process.hrtime.bigint();
  const config = { path: sandboxCgroupPath(o.cgroupPath, sb.ctx.sandboxId, o.config.runtime.sandboxCgroupOnly), pid: process.pid };
  await sb.journal.intend('cgroup', 'cgroup', config);
  const att = await sb.plugins.cgroup.attach(sb.ctx, config);
  await sb.journal.done('cgroup', 'cgroup', att);
  sb.timings.cgroup = ms(t0);
}

export async function assemble(sb: SandboxCore, o: AssembleOptions): Promise<void> {
  const cfg = o.config;
  const ns = sb.ctx.netns!;
  if (o.cgroupPath) await joinCgroup(sb, { ...o, cgroupPath: o.cgroupPath });
  if (o.createNetns) {
    await step(sb, 'netns', async () => {
      await sb.journal.intend('netns', 'netns', { name: ns.name! });
      const att = await sb.plugins.netns.attach(sb.ctx, { name: ns.name! });
      await sb.journal.done('netns', 'netns', att);
      sb.journal.state.netns = {
        path: att.resources.path,
        name: att.resources.name,
        created: true,
        dev: att.resources.dev,
        ino: att.resources.ino,
      };
      await sb.journal.save();
    });
  } else {
    const id = netnsIdentity(ns.path);
    if (!id) throw new KataError('E_NETNS_NOT_FOUND', `network namespace ${ns.name ?? ns.path} is gone`, { netns: ns.path });
  }
  // Three independent parts run side by side: the network (scan + endpoints), the share
  // (virtiofsd) and the guest kit check. Each journals what it made, so when one fails the others
  // are still undone (allSettled waits for all before the error goes up).
  const network = attachNetwork(sb, cfg);
  const share = attachShare(sb, o);
  const guestKit = step(sb, 'guest-kit', () => {
    o.progress('guest kit: checking (built once, then cached)');
    return o.guest();
  });
  const parts = await Promise.allSettled([network, share, guestKit]);
  const failed = parts.find((p): p is PromiseRejectedResult => p.status === 'rejected');
  if (failed) throw failed.reason;
  const { scan, interfaces } = await network;
  o.progress(`network: ${scan.endpoints.length} endpoint(s) in ${ns.name ?? ns.path}`);
  const { devices: fsDevices, storages } = await share;
  const guest = await guestKit;

  const q = cfg.hypervisor;
  const resources: VmResources = {
    vcpus: q.vcpus,
    maxVcpus: q.maxVcpus,
    memoryMiB: q.memoryMiB,
    maxMemoryMiB: q.maxMemoryMiB,
    memorySlots: q.memorySlots,
    kernel: guest.kernel,
    initrd: guest.initrd,
    image: guest.image,
    // kata-init mounts the share at boot from the same Storage AddStorages sends below (share-param.ts).
    kernelParams: [...guest.kernelParams, ...shareAtBootParams(storages)],
    devices: [...sb.journal.records('endpoint').flatMap((r) => r.data.devices), ...fsDevices],
    hotplugSlots: q.pcieRootPorts,
  };
  o.progress(`vm: starting ${q.kind}`);
  const vmConfig = { resources, driverConfig: q, cacheDir: cfg.runtime.stateDir };
  await sb.journal.intend('vm', 'vm', vmConfig);
  const vm = await step(sb, 'vm', () => sb.plugins.vm.attach(sb.ctx, vmConfig));
  await sb.journal.done('vm', 'vm', vm);
  await sb.recordProcess('qemu', vm.resources.daemon);
  sb.watchVm();

  o.progress('guest: booting, waiting for the agent');
  const agent = new AgentClient({ socketPath: sb.plugins.vm.hypervisor.agentEndpoint().path, log: sb.log });
  sb.setAgent(agent);
  await step(sb, 'agent', () => agent.waitReady(cfg.agent.dialTimeoutMs));
  await applyInGuest(sb, agent, { interfaces, routes: scan.routes, neighbors: scan.neighbors, storages });
}

/**
 * Interfaces, routes, neighbours and storages go to the agent together, in that order, without
 * waiting for each answer: the agent applies requests of this kind one after the other in the order
 * they arrive (routes after their interfaces), so only the round trips between them are saved. When
 * kata-init's early agent answered, they are applied through it instead (apply-through-exec.ts). Each
 * step's checkpoint runs before anything is sent; its timing is from the common start to its answer.
 * A failure is thrown once every request has been answered (the caller then undoes the journal).
 */
async function applyInGuest(
  sb: SandboxCore,
  agent: AgentClient,
  p: { interfaces: Interface[]; routes: ScanResult['routes']; neighbors: ScanResult['neighbors']; storages: Storage[] },
): Promise<void> {
  for (const name of ['interfaces', 'routes', 'neighbours', 'storages'] as const) await checkpoint(sb.ctx, `sandbox.${name}`);
  const t0 = process.hrtime.bigint();
  mark('apply.start');
  const timed = (name: Step, work: Promise<unknown>): Promise<unknown> =>
    work.finally(() => {
      sb.timings[name] = ms(t0);
      mark(`${name}.end`);
    });
  // kata-init's early agent answered: node's agent is still starting (apply-through-exec.ts)
  if (agent.earlyAgent) sb.log.debug('applying through the early agent: the agent\u2019s code, its ip run by Exec');
  const work: BootApply = agent.earlyAgent
    ? applyThroughExec(agent, p)
    : {
        interfaces: Promise.all(p.interfaces.map((iface) => agent.updateInterface(iface))),
        routes: p.routes.length > 0 ? agent.updateRoutes(p.routes) : Promise.resolve(),
        neighbours: p.neighbors.length > 0 ? agent.addARPNeighbors(p.neighbors) : Promise.resolve(),
        storages: p.storages.length > 0 ? agent.addStorages(p.storages) : Promise.resolve(),
      };
  const parts = (['interfaces', 'routes', 'neighbours', 'storages'] as const).map((name) => timed(name, work[name]));
  const settled = await Promise.allSettled(parts);
  const failed = settled.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Where the shared tree goes by default (Kata's /run/kata-containers/shared). */
export function defaultSharedRoot(cfg: SandboxConfig): string {
  return join(cfg.runtime.stateDir, 'shared');
}
