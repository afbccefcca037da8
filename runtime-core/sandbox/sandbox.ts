import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DaemonRecord } from '../../host/daemon.js';
import { KataError, isKataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import { mark } from '../../host/marks.js';
import { validateId } from '../../host/names.js';
import { CoprocessNetlink } from '../../host/netlink.js';
import { assertNotHostNetns, netnsRef, type NetnsRef } from '../../host/netns.js';
import type { FaultHook, PluginContext } from '../../host/plugin.js';
import { Sysfs } from '../../host/sysfs.js';
import type { ShareRecord } from '../../virtiofsd-manager/index.js';
import type { AgentClient } from '../agent/client.js';
import type { SandboxConfig } from '../config/types.js';
import type { SandboxState, StateStore } from '../state/store.js';
import { assemble, defaultSharedRoot } from './assemble.js';
import type { SandboxCore } from './core.js';
import type { GuestImage } from './guest-image.js';
import { Journal } from './journal.js';
import { createPlugins, type SandboxPlugins } from './resources.js';
import { teardownJournal } from './teardown.js';
import { sandboxView, type SandboxView } from './view.js';

export interface UpOptions {
  id: string;
  /** Existing namespace (name or path) to take; undefined = create kr-<id> and own it. */
  netns?: string;
  config: SandboxConfig;
  store: StateStore;
  log: Logger;
  /** Resolves the guest kit (may build it on first use). */
  guest: () => Promise<GuestImage>;
  /** Test hook: called before each named step (see STEPS in assemble.ts). */
  faults?: FaultHook;
  onProgress?: (msg: string) => void;
  /** Root of the virtio-fs shared tree (default <state_dir>/shared, as Kata's /run/kata-containers/shared). */
  sharedRoot?: string;
  /** The pod's cgroup (the sandbox container's OCI cgroupsPath): QEMU and the daemons run in it (sandbox_cgroup_only). */
  cgroupPath?: string;
}

/** The "container id" under which sandbox-level volumes are shared. */
const SANDBOX_VOLUMES = 'volumes';

/** The context the plugins of a sandbox work in (also used to undo it from its state alone). */
export function sandboxContext(state: SandboxState, store: StateStore, log: Logger, faults?: FaultHook): PluginContext {
  const ns: NetnsRef | undefined = state.netns
    ? { path: state.netns.path, ...(state.netns.name ? { name: state.netns.name } : {}) }
    : undefined;
  return {
    sandboxId: state.id,
    netns: ns,
    log,
    netlink: new CoprocessNetlink(),
    sysfs: new Sysfs(),
    runDir: store.runDir(state.id),
    ...(faults ? { faults } : {}),
  };
}

/**
 * One running sandbox, owned by its supervisor process: its resources (the namespace it may have
 * created, the endpoints, the virtio-fs share, the VM) from the registry, the journal that records
 * them, and the agent connection. Assembly, teardown, hotplug and the view live in their own modules;
 * this object holds the state they share.
 */
export class Sandbox extends EventEmitter<{ failed: [KataError] }> implements SandboxCore {
  private agentClient: AgentClient | undefined;
  private stopping = false;
  private teardownRun: Promise<string[]> | undefined;
  /** Serialises changes to the running sandbox (hotplug, shares): concurrent requests never interleave. */
  private changes: Promise<unknown> = Promise.resolve();
  readonly timings: Record<string, number> = {};
  readonly journal: Journal;

  private constructor(
    readonly id: string,
    state: SandboxState,
    private readonly store: StateStore,
    readonly ctx: PluginContext,
    readonly plugins: SandboxPlugins,
    readonly config: SandboxConfig,
    readonly log: Logger,
  ) {
    super();
    this.journal = new Journal(state, store);
  }

  get state(): SandboxState {
    return this.journal.state;
  }

  get agent(): AgentClient {
    if (!this.agentClient) throw new KataError('E_AGENT', `sandbox ${this.id} has no agent connection (not running)`);
    return this.agentClient;
  }

  setAgent(agent: AgentClient): void {
    this.agentClient = agent;
  }

  /** Build and boot a sandbox. On any failure everything done so far is undone (newest first) and the error rethrown. */
  static async up(o: UpOptions): Promise<Sandbox> {
    const id = validateId(o.id);
    // Creation is exclusive: under the sandbox lock (a `down` waits for `up` to finish) and with an
    // exclusive state directory (of two `up` of one id, one gets E_SANDBOX_EXISTS and touches nothing).
    const lock = await o.store.lock(id, { waitMs: 0, purpose: 'sandbox up' });
    mark('up.locked');
    try {
      return await Sandbox.upLocked(o, id);
    } finally {
      await lock.release();
    }
  }

  private static async upLocked(o: UpOptions, id: string): Promise<Sandbox> {
    const log = o.log.child({ sandbox: id });
    const nsRef = netnsRef(o.netns ?? `kr-${id}`.slice(0, 200));
    const given = o.netns !== undefined ? { ...nsRef, ...assertNotHostNetns(nsRef), created: false } : undefined;
    const state = await o.store.create(id, {
      ...(given ? { netns: given } : {}),
      ...(o.config.source ? { configSource: o.config.source } : {}),
    });
    const ctx = { ...sandboxContext(state, o.store, log, o.faults), netns: nsRef };
    const plugins = createPlugins({ hypervisor: o.config.hypervisor.kind, ...(o.faults ? { faults: o.faults } : {}) });
    const sb = new Sandbox(id, state, o.store, ctx, plugins, o.config, log);
    try {
      await assemble(sb, {
        config: o.config,
        createNetns: o.netns === undefined,
        guest: o.guest,
        sharedRoot: o.sharedRoot ?? defaultSharedRoot(o.config),
        progress: o.onProgress ?? (() => {}),
        ...(o.cgroupPath ? { cgroupPath: o.cgroupPath } : {}),
      });
      state.phase = 'running';
      state.timings = sb.timings;
      await o.store.save(state);
      mark('up.saved');
    } catch (e) {
      const err = isKataError(e) ? e : new KataError('E_INTERNAL', `sandbox ${id}: ${(e as Error).message}`, {}, { cause: e });
      log.error({ err: err.message, code: err.code }, 'sandbox up failed; rolling back');
      const left = await sb.teardown();
      state.phase = 'failed';
      state.error = { code: err.code, message: left.length > 0 ? `${err.message} (rollback left: ${left.join('; ')})` : err.message };
      await o.store.save(state).catch(() => {});
      throw err;
    }
    o.onProgress?.('sandbox running');
    return sb;
  }

  /** Watch the VM and the virtio-fs daemon: an exit nobody asked for fails the sandbox and cleans it. */
  watchVm(): void {
    this.plugins.vm.hypervisor.on('exit', (x) => {
      if (!x.expected)
        void this.fail(
          new KataError('E_DAEMON_CRASHED', `QEMU of sandbox ${this.id} exited unexpectedly (code ${x.code}, signal ${x.signal})`),
        );
    });
    this.plugins.virtiofs.on('crash', (c) => {
      if (c.sandboxId === this.id) {
        void this.fail(
          new KataError(
            'E_DAEMON_CRASHED',
            `virtiofsd of sandbox ${this.id} exited unexpectedly (${c.code ?? c.signal}); the guest's share would hang, so the VM is stopped`,
          ),
        );
      }
    });
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

  /**
   * Undo the journal once; every caller (a crash handler, a failing `up`, `down`) waits for the same
   * run, so nobody reports "done" while it is still running. Returns what could not be removed.
   */
  private teardown(): Promise<string[]> {
    this.teardownRun ??= (async () => {
      this.stopping = true;
      const t0 = process.hrtime.bigint();
      this.agentClient?.close();
      // The C virtiofsd exits when its VMM goes: that is expected now, not a crash.
      this.plugins.virtiofs.vmmStopping(this.id);
      const problems = await teardownJournal(this.journal, this.plugins, this.ctx, 'live');
      await this.ctx.netlink.close();
      this.state.processes = {};
      this.timings.down = Number((process.hrtime.bigint() - t0) / 1000n) / 1000;
      return problems;
    })();
    return this.teardownRun;
  }

  /** Stop the sandbox and remove everything, including its state; what could not be removed keeps the state and is thrown. */
  async down(): Promise<void> {
    this.state.phase = 'stopping';
    await this.store.save(this.state).catch(() => {});
    const problems = await this.teardown();
    if (problems.length > 0) {
      this.state.phase = 'failed';
      this.state.error = { code: 'E_STATE', message: `teardown left: ${problems.join('; ')}` };
      await this.store.save(this.state).catch(() => {});
      throw new KataError(
        'E_STATE',
        `sandbox ${this.id}: teardown could not remove everything: ${problems.join('; ')}; run sandbox down again`,
        { problems },
      );
    }
    await this.store.remove(this.id);
  }

  /** Run one change at a time (hotplug, shares). */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.changes.then(fn, fn);
    this.changes = next.catch(() => {});
    return next;
  }

  requireRunning(what: string): void {
    if (this.state.phase !== 'running')
      throw new KataError('E_STATE', `cannot ${what}: sandbox ${this.id} is ${this.state.phase}, not running`);
  }

  /**
   * Share a host directory (or file) with the guest through the sandbox's virtio-fs export, as Kata
   * does for volumes: read-write, or read-only in a way that holds inside the export. Returns once
   * the guest sees it (its virtio-fs client may hold a negative lookup of the name for the daemon's
   * entry timeout, 1 s with cache=auto).
   */
  shareVolume(req: { source: string; name?: string; readonly: boolean }): Promise<ShareRecord> {
    return this.serialize(async () => {
      this.requireRunning('share a volume');
      const before = this.journal.records('virtiofs')[0]?.data;
      // A share whose record cannot be saved is undone (the plugin unbinds it), and the in-memory
      // record goes back to what is on disk: a share the state does not name would outlive the sandbox.
      const rec = await this.plugins.virtiofs
        .shareVolume(
          this.id,
          { containerId: SANDBOX_VOLUMES, source: req.source, readonly: req.readonly, ...(req.name ? { name: req.name } : {}) },
          () => this.persistVirtiofs(),
        )
        .catch(async (e: unknown) => {
          if (before) await this.journal.update('virtiofs', 'virtiofs', before).catch(() => {});
          throw e;
        });
      await this.waitGuestSees(rec.guestPath);
      return rec;
    });
  }

  /**
   * Returns once the guest no longer sees the share: its virtio-fs client keeps what it looked up
   * for the daemon's entry timeout (1 s with cache=auto), through which the old directory stays in
   * view.
   */
  unshareVolume(name: string): Promise<void> {
    return this.serialize(async () => {
      const guestPath = this.plugins.virtiofs
        .sandbox(this.id)
        ?.dir.shares()
        .find((s) => s.name === name)?.guestPath;
      await this.plugins.virtiofs.unshare(this.id, name);
      await this.persistVirtiofs();
      if (guestPath) await this.waitGuestSees(guestPath, false);
    });
  }

  /** Persist the virtio-fs share list (after a share changed). */
  persistShares(): Promise<void> {
    return this.persistVirtiofs();
  }

  private async persistVirtiofs(): Promise<void> {
    const r = this.journal.records('virtiofs')[0];
    if (!r) return;
    await this.journal.update(r.id, 'virtiofs', { ...r.data, resources: this.plugins.virtiofs.state(this.id) });
  }

  /** Until the guest sees guestPath (or, with `present` false, no longer does); 5 s at most. */
  private async waitGuestSees(guestPath: string, present = true, timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.agent.exec(['test', '-e', guestPath], { timeoutMs: 2000 }).catch(() => undefined);
      if (r !== undefined && (r.exitCode === 0) === present) return;
      if (Date.now() > end) {
        this.log.warn({ guestPath }, present ? 'the guest does not see the new share yet' : 'the guest still sees the removed share');
        return;
      }
      await sleep(100);
    }
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
