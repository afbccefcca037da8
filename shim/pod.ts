/**
 * The pod a shim serves: one sandbox (a VM from the runtime core, made by the first container of the
 * group) and its containers, each with its init process and execs. The containerd Task calls land
 * here (task-service.ts only translates), and the task events are published from here in the order
 * containerd needs (an exit never before its start).
 */
import { join, resolve } from 'node:path';
import type { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import type { OciProcess, OciSpec } from '../runtime-core/agent/client.js';
import type { SandboxConfig } from '../runtime-core/config/types.js';
import { addContainerRootfs, removeContainerRootfs } from '../runtime-core/sandbox/containers.js';
import type { Sandbox } from '../runtime-core/sandbox/sandbox.js';
import { GrpcCode } from '../ttrpc/codes.js';
import { TtrpcError } from '../ttrpc/errors.js';
import { groupOf, readBundleSpec, writeBundleRecord, type Grouping } from './bundle.js';
import type { ShimEvents } from './events/shim-events.js';
import { guestSpec } from './guest-spec.js';
import { releasePodFiles } from './pod-files.js';
import { applyKataAnnotations } from './kata-annotations.js';
import { podSizing } from './pod-sizing.js';
import { ShimProcess, type ProcExit } from './process.js';
import { syncNetwork } from './network-sync.js';

export interface CreateRequest {
  id: string;
  bundle: string;
  rootfs: { type: string; source: string; options: string[] }[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  configPath?: string;
}

interface ShimContainer {
  id: string;
  bundle: string;
  role: Grouping['role'];
  init: ShimProcess;
  execs: Map<string, ShimProcess>;
  pendingExecs: Map<string, OciProcess>;
  /** Host binds shared for this container (unshared with it). */
  started: boolean;
}

export interface PodDeps {
  log: Logger;
  events: ShimEvents;
  /** Boot the sandbox (the runtime core's Sandbox.up under the configuration). */
  bootSandbox(id: string, netns: string | undefined, config: SandboxConfig, cgroupPath?: string): Promise<Sandbox>;
  loadConfig(path: string | undefined): SandboxConfig;
  /** The last container was deleted and the sandbox is down (the pod is gone; the shim has no further use). */
  onEmptied?(): void;
}

const notFound = (what: string): TtrpcError => new TtrpcError(GrpcCode.NOT_FOUND, `${what}: not found`);

/** The network namespace the spec asks for (a path), if any. */
function specNetns(spec: OciSpec): string | undefined {
  return spec.linux?.namespaces?.find((n) => n.type === 'network' && n.path)?.path;
}

export class Pod {
  private sandbox: Sandbox | undefined;
  private ownerId: string | undefined;
  private config: SandboxConfig | undefined;
  readonly containers = new Map<string, ShimContainer>();
  /** Serialises Create and Delete (they change the pod's shape); process calls run freely. */
  private shape: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: PodDeps) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.shape.then(fn, fn);
    this.shape = next.catch(() => {});
    return next;
  }

  /** The task pid containerd is given for every process: the VMM's, as Kata does. */
  get taskPid(): number {
    return this.sandbox?.view().pids.qemu ?? 0;
  }

  get empty(): boolean {
    return this.containers.size === 0;
  }

  get sandboxOf(): Sandbox | undefined {
    return this.sandbox;
  }

  private container(id: string): ShimContainer {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id}`);
    return c;
  }

  private process(id: string, execId: string): ShimProcess {
    const c = this.container(id);
    if (!execId) return c.init;
    const p = c.execs.get(execId);
    if (!p) throw notFound(`process ${execId} of container ${id}`);
    return p;
  }

  private get agent() {
    if (!this.sandbox) throw new TtrpcError(GrpcCode.FAILED_PRECONDITION, 'the pod has no running sandbox');
    return this.sandbox.agent;
  }

  create(req: CreateRequest): Promise<number> {
    return this.serial(async () => {
      if (this.containers.has(req.id)) throw new TtrpcError(GrpcCode.ALREADY_EXISTS, `container ${req.id} already exists`);
      const spec = readBundleSpec(req.bundle);
      const group = groupOf(req.id, spec.annotations ?? {});
      let made = false;
      if (!this.sandbox) {
        if (group.role === 'container')
          throw new TtrpcError(
            GrpcCode.FAILED_PRECONDITION,
            `container ${req.id}: its pod sandbox ${group.sandboxId} is not running in this shim`,
          );
        const annotations = spec.annotations ?? {};
        const loaded = this.deps.loadConfig(req.configPath);
        this.config = podSizing(applyKataAnnotations(loaded, annotations, this.deps.log), annotations, this.deps.log);
        this.sandbox = await this.deps.bootSandbox(group.sandboxId, specNetns(spec), this.config, spec.linux?.cgroupsPath);
        this.ownerId = req.id;
        made = true;
      } else if (group.role !== 'container') {
        throw new TtrpcError(
          GrpcCode.ALREADY_EXISTS,
          `container ${req.id} would make a second VM in the shim of sandbox ${this.sandbox.id}`,
        );
      }
      const sb = this.sandbox;
      try {
        await writeBundleRecord(req.bundle, {
          containerId: req.id,
          sandboxId: sb.id,
          role: group.role,
          stateDir: this.config!.runtime.stateDir,
          ...(this.config!.source ? { configPath: this.config!.source } : {}),
        });
        const target = req.rootfs.length > 0 ? join(req.bundle, 'rootfs') : resolve(req.bundle, spec.root?.path ?? 'rootfs');
        await addContainerRootfs(sb, req.id, target, req.rootfs);
        const init = new ShimProcess(req.id, '', { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal });
        try {
          const oci = await guestSpec(sb, req.id, spec, req.terminal);
          await sb.agent.createContainer({ container_id: req.id, exec_id: req.id, OCI: oci });
        } catch (e) {
          init.release();
          await removeContainerRootfs(sb, req.id).catch(() => {});
          await releasePodFiles(sb, req.id).catch(() => {});
          throw e;
        }
        this.containers.set(req.id, {
          id: req.id,
          bundle: req.bundle,
          role: group.role,
          init,
          execs: new Map(),
          pendingExecs: new Map(),
          started: false,
        });
      } catch (e) {
        if (made) await this.dropSandbox();
        throw e;
      }
      this.deps.events.created(req, this.taskPid);
      return this.taskPid;
    });
  }

  async start(id: string, execId: string): Promise<number> {
    const c = this.container(id);
    const agent = this.agent;
    if (!execId) {
      if (c.started) throw new TtrpcError(GrpcCode.FAILED_PRECONDITION, `container ${id} is already started`);
      // Links a CNI plugin added to the namespace after Create (`ctr run --cni`) reach the VM now.
      if (id === this.ownerId) await syncNetwork(this.sandbox!, this.config!, this.deps.log);
      await agent.startContainer(id);
      c.started = true;
      c.init.started(agent, this.taskPid, (p) => this.exited(p));
      this.deps.events.started(id, this.taskPid);
      return this.taskPid;
    }
    const proc = this.process(id, execId);
    const spec = c.pendingExecs.get(execId);
    if (proc.state !== 'created' || !spec)
      throw new TtrpcError(GrpcCode.FAILED_PRECONDITION, `exec ${execId} of container ${id} is already started`);
    c.pendingExecs.delete(execId);
    await agent.execProcess(id, execId, spec);
    proc.started(agent, this.taskPid, (p) => this.exited(p));
    this.deps.events.execStarted(id, execId, this.taskPid);
    return this.taskPid;
  }

  private exited(p: ShimProcess): void {
    this.deps.events.exited(p.containerId, p.execId || p.containerId, this.taskPid, p.exit!);
  }

  exec(id: string, execId: string, spec: OciProcess, stdio: { stdin: string; stdout: string; stderr: string; terminal: boolean }): void {
    const c = this.container(id);
    if (!execId) throw new TtrpcError(GrpcCode.INVALID_ARGUMENT, `exec of container ${id} needs an exec id`);
    if (c.execs.has(execId)) throw new TtrpcError(GrpcCode.ALREADY_EXISTS, `exec ${execId} of container ${id} already exists`);
    if (!Array.isArray(spec.args) || spec.args.length === 0)
      throw new TtrpcError(GrpcCode.INVALID_ARGUMENT, `exec ${execId}: process.args must be a non-empty array`);
    c.execs.set(execId, new ShimProcess(id, execId, stdio));
    c.pendingExecs.set(execId, { ...spec, terminal: stdio.terminal });
    this.deps.events.execAdded(id, execId);
  }

  async kill(id: string, execId: string, signal: number, all: boolean): Promise<void> {
    const proc = this.process(id, execId);
    if (proc.state === 'stopped') {
      // Kata answers success for SIGKILL/SIGTERM to a container that already stopped.
      if (!execId && (signal === 9 || signal === 15)) return;
      throw notFound('process already finished');
    }
    if (proc.state === 'created' && execId) {
      proc.finish(128 + signal);
      this.exited(proc);
      return;
    }
    await this.agent.signalProcess(id, all && !execId ? '' : proc.agentExecId, signal);
  }

  wait(id: string, execId: string): Promise<ProcExit> {
    return this.process(id, execId).exited;
  }

  state(id: string, execId: string): { proc: ShimProcess; bundle: string } {
    const c = this.container(id);
    return { proc: this.process(id, execId), bundle: c.bundle };
  }

  closeIO(id: string, execId: string): void {
    this.process(id, execId).closeStdin();
  }

  async resize(id: string, execId: string, width: number, height: number): Promise<void> {
    const proc = this.process(id, execId);
    if (proc.state !== 'running') return;
    await this.agent.ttyWinResize(id, proc.agentExecId, height, width);
  }

  delete(id: string, execId: string): Promise<{ pid: number; exit: ProcExit }> {
    if (execId) {
      const c = this.container(id);
      const proc = this.process(id, execId);
      if (proc.state === 'running')
        throw new TtrpcError(GrpcCode.FAILED_PRECONDITION, `exec ${execId} of container ${id} is still running`);
      if (!proc.exit) proc.finish(0);
      proc.release();
      c.execs.delete(execId);
      c.pendingExecs.delete(execId);
      return Promise.resolve({ pid: this.taskPid, exit: proc.exit! });
    }
    return this.serial(async () => {
      const c = this.container(id);
      if (c.init.state === 'running') throw new TtrpcError(GrpcCode.FAILED_PRECONDITION, `container ${id} is still running; kill it first`);
      const pid = this.taskPid;
      const sb = this.sandbox;
      if (sb && sb.state.phase === 'running') {
        await sb.agent
          .removeContainer(id)
          .catch((e: unknown) => this.deps.log.warn({ err: (e as Error).message, container: id }, 'RemoveContainer failed'));
      }
      if (sb) {
        await removeContainerRootfs(sb, id).catch((e: unknown) =>
          this.deps.log.warn({ err: (e as Error).message, container: id }, 'rootfs removal failed'),
        );
        await releasePodFiles(sb, id).catch(() => {});
      }
      if (!c.init.exit) c.init.finish(c.started ? 255 : 0);
      for (const p of [c.init, ...c.execs.values()]) p.release();
      this.containers.delete(id);
      this.deps.events.deleted(id, pid, c.init.exit!);
      if (this.containers.size === 0) {
        await this.dropSandbox();
        this.deps.onEmptied?.();
      }
      return { pid, exit: c.init.exit! };
    });
  }

  /** Tear the sandbox down (the last container is gone, or the shim is told to stop). */
  async dropSandbox(): Promise<void> {
    const sb = this.sandbox;
    this.sandbox = undefined;
    if (!sb) return;
    await sb
      .down()
      .catch((e: unknown) =>
        this.deps.log.error(
          { err: (e as Error).message, sandbox: sb.id },
          'sandbox teardown left something; `kata-resources sandbox down` retries it',
        ),
      );
  }

  /** The VM died under the pod: every process ends (255), so containerd's Waits and CRI see the exits. */
  sandboxFailed(err: KataError): void {
    this.deps.log.error({ code: err.code, err: err.message }, 'the sandbox failed; every process of the pod ends');
    for (const c of this.containers.values()) {
      for (const p of [c.init, ...c.execs.values()]) {
        if (p.state === 'running') {
          p.finish(255);
          this.exited(p);
        } else if (!p.exit) p.finish(255);
      }
    }
    this.sandbox = undefined;
  }
}
