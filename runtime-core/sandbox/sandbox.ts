import { EventEmitter } from 'node:events';
import type { Interface, Route, ARPNeighbor, Storage } from '../../host/agent-types.js';
import type { DeviceSpec } from '../../host/device-specs.js';
import { KataError, isKataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import { CoprocessNetlink, type Netlink } from '../../host/netlink.js';
import { assertNetnsExists, createNetns, deleteNetns, netnsRef, type NetnsRef } from '../../host/netns.js';
import { validateId } from '../../host/names.js';
import { checkpoint, type Attached, type FaultHook, type PluginContext } from '../../host/plugin.js';
import { Sysfs } from '../../host/sysfs.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { attachEndpoint, createTap, detachEndpoint, type EndpointResources } from '../../plugins/network/endpoint.js';
import { readLink } from '../../plugins/network/link-info.js';
import { tapName } from '../../plugins/network/names.js';
import { UndoStack } from '../../host/undo.js';
import { sleep } from '../../host/retry.js';
import { scanNetns } from '../../plugins/network/scan.js';
import { VirtiofsPlugin, type ShareRecord, type VirtiofsResources } from '../../virtiofsd-manager/index.js';
import { AgentClient } from '../agent/client.js';
import type { SandboxConfig } from '../config/types.js';
import type { SandboxState, StateStore } from '../state/store.js';
import type { DaemonRecord } from '../../host/daemon.js';
import type { RunningVm, VmDriver, VmRecord } from './vm-port.js';

/** The guest kit paths a sandbox boots (from the config, or the embedded default guest). */
export interface GuestImage {
  kernel: string;
  initrd: string;
  image: string;
  kernelParams: string[];
}

export interface UpOptions {
  id: string;
  /** Existing namespace (name or path) to take; undefined = create kr-<id> and own it. */
  netns?: string;
  config: SandboxConfig;
  store: StateStore;
  log: Logger;
  vm: VmDriver;
  /** Resolves the guest kit (may build it on first use). */
  guest: () => Promise<GuestImage>;
  /** Test hook: called before each named step (see STEPS). */
  faults?: FaultHook;
  onProgress?: (msg: string) => void;
  /** Root of the virtio-fs shared tree (default <state_dir>/shared, as Kata's /run/kata-containers/shared). */
  sharedRoot?: string;
}

/** How endpoints are attached: from the configuration (see networkOptions). */
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

/** The "container id" under which sandbox-level volumes are shared. */
const SANDBOX_VOLUMES = 'volumes';

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

interface EndpointView {
  name: string;
  type: string;
  tap?: string;
  mac: string;
  mtu: number;
  addresses: string[];
}

/** The sandbox as the CLI prints it. */
export interface SandboxView {
  id: string;
  state: SandboxState['phase'];
  netns: { path: string; name?: string; created: boolean } | undefined;
  pids: Record<string, number>;
  endpoints: EndpointView[];
  shares: { tag: string; hostDir: string; guestMountPoint: string }[];
  /** Host directories shared into the export (`sandbox share`). */
  volumes: { name: string; source: string; readonly: boolean; guestPath: string }[];
  accel?: string;
  error?: { code: string; message: string };
  timings?: Record<string, number>;
}

const ms = (t0: bigint): number => Number((process.hrtime.bigint() - t0) / 1000n) / 1000;

/**
 * One running sandbox, owned by its supervisor process: the network endpoints of its namespace,
 * the virtio-fs daemon and directory, the VM, and the agent connection. Every step is journalled
 * in the state file before the next starts, so `down` after a crash knows exactly what to undo.
 */
export class Sandbox extends EventEmitter<{ failed: [KataError] }> {
  private vmHandle: RunningVm | undefined;
  private agentClient: AgentClient | undefined;
  private stopping = false;
  private teardownRun: Promise<void> | undefined;
  readonly timings: Record<string, number> = {};

  private constructor(
    readonly id: string,
    private state: SandboxState,
    private readonly store: StateStore,
    private readonly ctx: PluginContext,
    private readonly virtiofs: VirtiofsPlugin,
    private readonly vmDriver: VmDriver,
    private readonly log: Logger,
  ) {
    super();
  }

  get agent(): AgentClient {
    if (!this.agentClient) throw new KataError('E_AGENT', `sandbox ${this.id} has no agent connection (not running)`);
    return this.agentClient;
  }

  /** Build and boot a sandbox. On any failure everything done so far is undone (newest first) and the error rethrown. */
  static async up(o: UpOptions): Promise<Sandbox> {
    const id = validateId(o.id);
    const log = o.log.child({ sandbox: id });
    const progress = o.onProgress ?? (() => {});
    const nsRef = o.netns !== undefined ? netnsRef(o.netns) : netnsRef(`kr-${id}`.slice(0, 200));
    if (o.netns !== undefined) assertNetnsExists(nsRef);
    const state = await o.store.create(id, {
      netns: { path: nsRef.path, ...(nsRef.name ? { name: nsRef.name } : {}), created: o.netns === undefined },
      ...(o.config.source ? { configSource: o.config.source } : {}),
    });
    const runDir = o.store.sandboxDir(id);
    const netlink: Netlink = new CoprocessNetlink();
    const ctx: PluginContext = {
      sandboxId: id,
      netns: nsRef,
      log,
      netlink,
      sysfs: new Sysfs(),
      runDir,
      ...(o.faults ? { faults: o.faults } : {}),
    };
    const virtiofs = new VirtiofsPlugin();
    const sb = new Sandbox(id, state, o.store, ctx, virtiofs, o.vm, log);
    try {
      await sb.assemble(o, progress);
    } catch (e) {
      const err = isKataError(e) ? e : new KataError('E_INTERNAL', `sandbox ${id}: ${(e as Error).message}`, {}, { cause: e });
      log.error({ err: err.message, code: err.code }, 'sandbox up failed; rolling back');
      await sb.teardown();
      sb.state.phase = 'failed';
      sb.state.error = { code: err.code, message: err.message };
      await o.store.save(sb.state).catch(() => {});
      throw err;
    }
    return sb;
  }

  private async step<T>(name: (typeof STEPS)[number], fn: () => Promise<T>): Promise<T> {
    await checkpoint(this.ctx, `sandbox.${name}`);
    const t0 = process.hrtime.bigint();
    const r = await fn();
    this.timings[name] = (this.timings[name] ?? 0) + ms(t0);
    return r;
  }

  private async journal(id: string, kind: string, data: unknown): Promise<void> {
    await this.store.addResource(this.state, { id, kind, data });
  }

  private async assemble(o: UpOptions, progress: (m: string) => void): Promise<void> {
    const cfg = o.config;
    const ns = this.ctx.netns!;
    if (this.state.netns?.created) {
      await this.step('netns', async () => {
        await createNetns(ns.name!);
        await this.ctx.netlink.batch('ip', ns, ['link set lo up']);
      });
    }
    // Three independent parts run side by side: the network (scan + endpoints), the share
    // (virtiofsd) and the guest kit check. Each journals what it made, so when one fails the
    // others are still undone (allSettled waits for all before the error goes up).
    const network = (async () => {
      const scan = await this.step('scan', () => scanNetns(this.ctx));
      const interfaces: Interface[] = [];
      if (cfg.runtime.internetworkingModel !== 'none' || !cfg.runtime.disableNewNetns) {
        const net = networkOptions(cfg);
        for (const [i, link] of scan.links.entries()) {
          const att = await this.step('endpoint', () =>
            attachEndpoint(this.ctx, { link, index: i, model: net.model, queues: net.queues, vhost: net.vhost }),
          );
          await this.journal(`net:${link.name}`, 'endpoint', att);
          interfaces.push(...(att.guest.interfaces ?? []));
        }
      }
      progress(`network: ${scan.links.length} endpoint(s) in ${ns.name ?? ns.path}`);
      return { scan, interfaces };
    })();
    const share = (async (): Promise<{ devices: DeviceSpec[]; storages: Storage[] }> => {
      if (cfg.hypervisor.sharedFs !== 'virtio-fs') return { devices: [], storages: [] };
      const att = await this.step('virtiofs', () =>
        this.virtiofs.attach(this.ctx, {
          daemonPath: cfg.hypervisor.virtioFsDaemon,
          cache: cfg.hypervisor.virtioFsCache,
          extraArgs: cfg.hypervisor.virtioFsExtraArgs,
          queueSize: cfg.hypervisor.virtioFsQueueSize,
          root: o.sharedRoot ?? join(cfg.runtime.stateDir, 'shared'),
        }),
      );
      this.virtiofs.on('crash', (c) => {
        if (c.sandboxId === this.id)
          void this.fail(
            new KataError(
              'E_DAEMON_CRASHED',
              `virtiofsd of sandbox ${this.id} exited unexpectedly (${c.code ?? c.signal}); the guest's share would hang, so the VM is stopped`,
            ),
          );
      });
      if (att.resources.daemon.daemon) this.state.processes.virtiofsd = att.resources.daemon.daemon;
      await this.journal('virtiofs', 'virtiofs', att);
      return { devices: att.devices, storages: att.guest.storages ?? [] };
    })();
    const guestKit = this.step('guest-kit', async () => {
      progress('guest kit: checking (built once, then cached)');
      return o.guest();
    });
    const parts = await Promise.allSettled([network, share, guestKit]);
    const failed = parts.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    if (failed) throw failed.reason;
    const { scan, interfaces } = await network;
    const { devices: fsDevices, storages } = await share;
    const guest = await guestKit;
    const devices = [...this.endpoints().flatMap((a) => a.devices), ...fsDevices];

    progress('vm: starting QEMU');
    const vm = await this.step('vm', () =>
      this.vmDriver.start({
        sandboxId: this.id,
        config: cfg,
        runDir: this.ctx.runDir,
        netns: ns,
        kernel: guest.kernel,
        initrd: guest.initrd,
        image: guest.image,
        kernelParams: guest.kernelParams,
        devices,
        log: this.log,
      }),
    );
    this.vmHandle = vm;
    await this.journal('vm', 'vm', vm.record());
    this.state.processes.qemu = vm.record().daemon;
    await this.store.save(this.state);
    vm.on('exit', (x) => {
      if (!x.expected)
        void this.fail(
          new KataError('E_DAEMON_CRASHED', `QEMU of sandbox ${this.id} exited unexpectedly (code ${x.code}, signal ${x.signal})`),
        );
    });

    progress('guest: booting, waiting for the agent');
    const agent = new AgentClient({ socketPath: vm.agentSocket, log: this.log });
    this.agentClient = agent;
    await this.step('agent', () => agent.waitReady(cfg.agent.dialTimeoutMs));
    await this.step('interfaces', async () => {
      for (const iface of interfaces) await agent.updateInterface(iface);
    });
    const routes: Route[] = scan.routes;
    await this.step('routes', async () => {
      if (routes.length > 0) await agent.updateRoutes(routes);
    });
    const neighbours: ARPNeighbor[] = scan.neighbors;
    await this.step('neighbours', async () => {
      if (neighbours.length > 0) await agent.addARPNeighbors(neighbours);
    });
    await this.step('storages', async () => {
      if (storages.length > 0) await agent.addStorages(storages);
    });
    this.state.phase = 'running';
    this.state.extra.timings = this.timings;
    await this.store.save(this.state);
    progress('sandbox running');
  }

  private endpoints(): Attached<EndpointResources>[] {
    return this.state.resources.filter((r) => r.kind === 'endpoint').map((r) => r.data as Attached<EndpointResources>);
  }

  /** A daemon died or something else made the sandbox unusable: report failed and clean everything. */
  private async fail(err: KataError): Promise<void> {
    if (this.stopping) return;
    this.log.error({ code: err.code, err: err.message }, 'sandbox failed; cleaning up');
    await this.teardown();
    this.state.phase = 'failed';
    this.state.error = { code: err.code, message: err.message };
    await this.store.save(this.state).catch(() => {});
    this.emit('failed', err);
  }

  /** Undo everything in the journal, newest first (VM, then virtiofsd, then endpoints, then the netns). */
  /**
   * Run the teardown once; every caller (a crash handler, a failing `up`, `down`) waits for the same
   * one, so nobody reports "done" while it is still running.
   */
  private teardown(): Promise<void> {
    this.teardownRun ??= (async () => {
      this.stopping = true;
      const t0 = process.hrtime.bigint();
      this.agentClient?.close();
      await teardownFromState(this.state, this.store, this.log, {
        vm: this.vmHandle,
        virtiofs: this.virtiofs,
        ctx: this.ctx,
        vmDriver: this.vmDriver,
      });
      await this.ctx.netlink.close();
      this.timings.down = ms(t0);
    })();
    return this.teardownRun;
  }

  /** Stop the sandbox and remove everything, including its state. Idempotent. */
  async down(): Promise<void> {
    this.state.phase = 'stopping';
    await this.store.save(this.state).catch(() => {});
    await this.teardown();
    await this.store.remove(this.id);
  }

  /**
   * Share a host directory (or file) with the guest through the sandbox's virtio-fs export, as Kata
   * does for volumes: read-write, or read-only in a way that holds inside the export. The guest sees
   * it under the share's mount point (GUEST_SHARE_DIR/<name>).
   */
  async shareVolume(req: { source: string; name?: string; readonly: boolean }): Promise<ShareRecord> {
    if (this.state.phase !== 'running') throw new KataError('E_STATE', `sandbox ${this.id} is ${this.state.phase}, not running`);
    const rec = await this.virtiofs.shareVolume(this.id, {
      containerId: SANDBOX_VOLUMES,
      source: req.source,
      readonly: req.readonly,
      ...(req.name ? { name: req.name } : {}),
    });
    await this.persistVirtiofs();
    await this.waitGuestSees(rec.guestPath);
    return rec;
  }

  /**
   * Return only once the guest sees a new share: the guest's virtio-fs client may hold a negative
   * lookup of the name for the daemon's entry timeout (1 s with cache=auto), so a caller that uses
   * the share at once could be told it does not exist.
   */
  private async waitGuestSees(guestPath: string, timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.agent.exec(['test', '-e', guestPath], { timeoutMs: 2000 }).catch(() => undefined);
      if (r?.exitCode === 0) return;
      if (Date.now() > end) {
        this.log.warn({ guestPath }, 'the guest does not see the new share yet');
        return;
      }
      await sleep(100);
    }
  }

  async unshareVolume(name: string): Promise<void> {
    await this.virtiofs.unshare(this.id, name);
    await this.persistVirtiofs();
  }

  private async persistVirtiofs(): Promise<void> {
    const r = this.state.resources.find((x) => x.kind === 'virtiofs');
    if (!r) return;
    (r.data as Attached<VirtiofsResources>).resources = this.virtiofs.state(this.id);
    await this.store.save(this.state);
  }

  /** The next free endpoint index (names tap<idx>_kata; never reused while the sandbox lives). */
  private nextEndpointIndex(): number {
    const used = this.endpoints().map((a) => a.resources.index);
    return used.length === 0 ? 0 : Math.max(...used) + 1;
  }

  private requireRunning(what: string): RunningVm {
    if (this.state.phase !== 'running' || !this.vmHandle)
      throw new KataError('E_STATE', `cannot ${what}: sandbox ${this.id} is ${this.state.phase}, not running`);
    return this.vmHandle;
  }

  /**
   * Hot-add a network interface (Kata's AddInterface / `kata-runtime kata-network add-iface`):
   * either a new tap made from an interface description, or an existing link of the sandbox's
   * namespace (e.g. one a CNI plugin added after the sandbox started), attached with the
   * configured model. Then QMP hotplug on a free root port, then the agent configures it with its
   * PCI path. Each step is undone if a later one fails.
   */
  async addInterface(
    req:
      | { link: string }
      | { interface: { name: string; hwAddr?: string; mtu?: number; IPAddresses?: Interface['IPAddresses']; raw_flags?: number } },
    opts: NetworkOptions,
  ): Promise<Interface> {
    const vm = this.requireRunning('add an interface');
    const index = this.nextEndpointIndex();
    let att: Attached<EndpointResources>;
    if ('link' in req) {
      const link = await readLink(this.ctx, req.link);
      if (this.endpoints().some((a) => a.resources.link === link.name))
        throw new KataError('E_INVALID_ARGUMENT', `link ${link.name} of sandbox ${this.id} is already attached`, { link: link.name });
      att = await attachEndpoint(this.ctx, { link, index, model: opts.model, queues: opts.queues, vhost: opts.vhost });
    } else {
      const i = req.interface;
      att = await createTap(this.ctx, {
        name: tapName(index),
        guestName: i.name,
        index,
        queues: opts.queues,
        vhost: opts.vhost,
        ...(i.hwAddr ? { mac: i.hwAddr } : {}),
        ...(i.mtu ? { mtu: i.mtu } : {}),
        ...(i.IPAddresses ? { addresses: i.IPAddresses } : {}),
        ...(i.raw_flags !== undefined ? { rawFlags: i.raw_flags } : {}),
      });
    }
    const undo = new UndoStack(this.log);
    const recId = `net:${att.guest.interfaces?.[0]?.name ?? index}`;
    return undo.guard(async () => {
      undo.push('detach endpoint', () => detachEndpoint(this.ctx, att));
      // Journalled before the VM sees it, so a crash from here on is cleaned from the state.
      await this.journal(recId, 'endpoint', att);
      undo.push('forget endpoint', () => this.store.removeResource(this.state, recId));
      const spec = att.devices[0];
      if (!spec) throw new KataError('E_UNSUPPORTED', `interface ${index}: the endpoint has no device to hot-plug (model none?)`);
      const plugged = await vm.hypervisor.hotplug(spec);
      undo.push('unplug', () => vm.hypervisor.unplug(spec.id));
      const iface = { ...att.guest.interfaces![0]!, devicePath: plugged.guestPciPath ?? '' };
      att.guest.interfaces = [iface];
      const applied = await this.agent.updateInterface(iface);
      if ('link' in req) {
        // Routes of the new link (the whole table is sent again: the agent replaces what exists).
        const scan = await scanNetns(this.ctx);
        const routes = scan.routes.filter((r) => r.device === iface.name);
        if (routes.length > 0) await this.agent.updateRoutes(routes);
      }
      await this.store.save(this.state); // att (in the journal) now carries the PCI path
      return applied;
    });
  }

  /** Hot-remove an interface added at start or later, by guest name or MAC (Kata relies on the guest kernel to drop it). */
  async removeInterface(nameOrMac: string): Promise<void> {
    const vm = this.requireRunning('remove an interface');
    const key = nameOrMac.toLowerCase();
    const rec = this.state.resources.find(
      (r) =>
        r.kind === 'endpoint' &&
        (() => {
          const i = (r.data as Attached<EndpointResources>).guest.interfaces?.[0];
          return i !== undefined && (i.name === nameOrMac || i.hwAddr.toLowerCase() === key);
        })(),
    );
    if (!rec)
      throw new KataError(
        'E_LINK_NOT_FOUND',
        `sandbox ${this.id} has no interface named or with MAC ${nameOrMac}; see \`kata-resources iface list ${this.id}\``,
        { iface: nameOrMac },
      );
    const att = rec.data as Attached<EndpointResources>;
    for (const d of att.devices) await vm.hypervisor.unplug(d.id);
    await detachEndpoint(this.ctx, att);
    await this.store.removeResource(this.state, rec.id);
  }

  /** Remember a process of this sandbox (e.g. the supervisor itself) in the state file. */
  async recordProcess(role: string, rec: DaemonRecord): Promise<void> {
    this.state.processes[role] = rec;
    await this.store.save(this.state);
  }

  view(): SandboxView {
    return sandboxView(this.state, this.timings);
  }
}

/** The printable form of a state (also used by the CLI when the supervisor is gone). */
export function sandboxView(state: SandboxState, timings?: Record<string, number>): SandboxView {
  const endpoints: EndpointView[] = state.resources
    .filter((r) => r.kind === 'endpoint')
    .map((r) => {
      const a = r.data as Attached<EndpointResources>;
      const i = a.guest.interfaces?.[0];
      const tap = a.resources.tap;
      return {
        name: i?.name ?? r.id,
        type: i?.type ?? a.kind,
        ...(tap ? { tap } : {}),
        mac: i?.hwAddr ?? '',
        mtu: i?.mtu ?? 0,
        addresses: (i?.IPAddresses ?? []).map((x) => `${x.address}/${x.mask}`),
      };
    });
  const vfs = state.resources.find((r) => r.kind === 'virtiofs')?.data as Attached<VirtiofsResources> | undefined;
  const guestDir = vfs?.guest.storages?.[0]?.mount_point ?? '';
  const shares = vfs ? [{ tag: vfs.resources.tag, hostDir: vfs.resources.shared.mountsDir, guestMountPoint: guestDir }] : [];
  const volumes = (vfs?.resources.shared.shares ?? []).map((v) => ({
    name: v.name,
    source: v.source,
    readonly: v.readonly,
    guestPath: v.guestPath,
  }));
  const vm = state.resources.find((r) => r.kind === 'vm')?.data as VmRecord | undefined;
  const pids: Record<string, number> = {};
  for (const [k, v] of Object.entries(state.processes)) pids[k] = v.pid;
  return {
    id: state.id,
    state: state.phase,
    netns: state.netns,
    pids,
    endpoints,
    shares,
    volumes,
    ...(vm ? { accel: vm.accel } : {}),
    ...(state.error ? { error: state.error } : {}),
    ...(timings && Object.keys(timings).length
      ? { timings }
      : state.extra.timings
        ? { timings: state.extra.timings as Record<string, number> }
        : {}),
  };
}

/**
 * Undo a sandbox from its journal. With live objects (the supervisor's own teardown) it stops them
 * directly; without (the supervisor died) it works from the records alone. Each step tolerates
 * what is already gone, and a failing step does not stop the others.
 */
export async function teardownFromState(
  state: SandboxState,
  store: StateStore,
  log: Logger,
  live: { vm?: RunningVm | undefined; virtiofs?: VirtiofsPlugin; ctx?: PluginContext; vmDriver: VmDriver },
): Promise<void> {
  const nsRec = state.netns;
  const ns: NetnsRef | undefined = nsRec ? { path: nsRec.path, ...(nsRec.name ? { name: nsRec.name } : {}) } : undefined;
  const ctx: PluginContext = live.ctx ?? {
    sandboxId: state.id,
    netns: ns,
    log,
    netlink: new CoprocessNetlink(),
    sysfs: new Sysfs(),
    runDir: store.sandboxDir(state.id),
  };
  const virtiofs = live.virtiofs ?? new VirtiofsPlugin();
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      log.warn({ err: (e as Error).message, step: what }, 'teardown step failed; continuing');
    }
  };
  for (const r of [...state.resources].reverse()) {
    if (r.kind === 'vm') {
      await attempt('vm', async () => {
        // The C virtiofsd exits when its VMM goes: that is expected now, not a crash.
        virtiofs.vmmStopping(state.id);
        if (live.vm) await live.vm.stop();
        await live.vmDriver.recover(r.data as VmRecord, log);
      });
    } else if (r.kind === 'virtiofs') {
      await attempt('virtiofs', () => virtiofs.detach(ctx, r.data as Attached<VirtiofsResources>));
    } else if (r.kind === 'endpoint') {
      await attempt(`endpoint ${r.id}`, () => detachEndpoint(ctx, r.data as Attached<EndpointResources>));
    }
    await store.removeResource(state, r.id).catch(() => {});
  }
  if (!live.ctx) await ctx.netlink.close();
  if (nsRec?.created && ns) {
    await ctx.netlink.release(ns);
    await attempt('netns', () => deleteNetns(ns));
  }
  state.processes = {};
}
