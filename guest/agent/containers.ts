/**
 * Containers in the guest (Kata's CreateContainer/StartContainer/ExecProcess/RemoveContainer) on
 * Debian's runc, each process under its own kata-monitor (launcher.ts, monitor.ts); container_id
 * "" addresses the root-environment processes (root-processes.ts). Kata's bundle layout: /run/kata-containers/<cid>/config.json with
 * rootfs/ a bind of the rootfs the host shared (or a storage mounted). Everything CreateContainer
 * does is undone if a later step fails, and RemoveContainer undoes all of it.
 */
import { fsp } from './builtins.js';
import { isAbsolute, join } from 'node:path';
import { UndoStack } from '../../host/undo.js';
import { Launcher, type LaunchContext } from './launcher.js';
import { reworkSpec } from './oci-spec.js';
import { checkOciProcess, type AgentProcess } from './processes.js';
import { RootProcesses } from './root-processes.js';
import { AgentError, type ContainerInfo, type CreateContainerParams } from './protocol.js';
import { checkContainerId, runcBase, runcDelete, runcKillAll, runcStart, type RuncContext } from './runc.js';
import { addStorages, readMounts, removeStorages, type StorageContext } from './storage.js';

export interface ContainerContext extends RuncContext, LaunchContext {
  storage: StorageContext;
  /** Bundles: <bundleRoot>/<cid> (Kata: /run/kata-containers). */
  bundleRoot: string;
  /** Where a relative root.path is looked up: <sharedRoot>/<cid>/<path> (Kata: .../shared/containers). */
  sharedRoot: string;
}

interface Container {
  id: string;
  execId: string;
  bundle: string;
  rootfs: string;
  cgroupsPath: string;
  /** Mount points of the storages CreateContainer mounted. */
  storages: string[];
  init: AgentProcess;
  execs: Map<string, AgentProcess>;
  started: boolean;
  newPidNs: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function checkExecId(id: unknown): string {
  if (typeof id !== 'string' || id === '' || id.length > 256 || /[\0/]/.test(id))
    throw new AgentError('E_INVALID_ARGUMENT', `exec_id ${JSON.stringify(id)} must be a non-empty string without "/"`);
  return id;
}

/** Whether pid catches signal sig (SigCgt in /proc/PID/status). */
async function catches(pid: number, sig: number): Promise<boolean> {
  const st = await fsp()
    .readFile(`/proc/${pid}/status`, 'utf8')
    .catch(() => '');
  const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(st);
  return m ? !!((BigInt(`0x${m[1]}`) >> BigInt(sig - 1)) & 1n) : true;
}

export class Containers {
  private readonly containers = new Map<string, Container>();
  private readonly launcher: Launcher;
  private readonly root: RootProcesses;
  private seq = 0;

  constructor(private readonly ctx: ContainerContext) {
    this.launcher = new Launcher(ctx);
    this.root = new RootProcesses(this.launcher);
  }

  async create(p: CreateContainerParams): Promise<{ pid: number }> {
    const cid = checkContainerId(p.container_id);
    if (this.containers.has(cid)) throw new AgentError('E_ALREADY_EXISTS', `container ${cid} exists already`);
    const execId = p.exec_id || cid;
    const spec = p.OCI;
    if (!spec || typeof spec !== 'object') throw new AgentError('E_INVALID_ARGUMENT', 'CreateContainer needs OCI (the runtime spec)');
    const proc = checkOciProcess(spec.process, 'OCI.process');
    const undo = new UndoStack();
    try {
      const storages = p.storages ?? [];
      const { mount_points } = await addStorages(this.ctx.storage, storages);
      undo.push(
        'storages',
        async () =>
          void (await removeStorages(
            this.ctx.storage,
            mount_points.map((mount_point) => ({ mount_point })),
          )),
      );
      const rootPath = spec.root?.path ?? 'rootfs';
      const source = isAbsolute(rootPath) ? rootPath : join(this.ctx.sharedRoot, cid, rootPath);
      if (
        !(await fsp()
          .stat(source)
          .then(
            (s) => s.isDirectory(),
            () => false,
          ))
      )
        throw new AgentError(
          'E_INVALID_ARGUMENT',
          `container ${cid}: the rootfs ${source} is not a directory in the guest (share it or mount a storage there)`,
        );
      const bundle = join(this.ctx.bundleRoot, cid);
      const rootfs = join(bundle, 'rootfs');
      await fsp().mkdir(rootfs, { recursive: true });
      undo.push('bundle', () => this.removeBundle(bundle));
      await this.mount(['--bind', source, rootfs]);
      undo.push('rootfs bind', () => this.unmount(rootfs));
      const guestSpec = reworkSpec(spec, { containerId: cid, rootfs });
      await fsp().writeFile(join(bundle, 'config.json'), JSON.stringify(guestSpec));
      const pidFile = join(bundle, 'init.pid');
      const terminal = proc.terminal === true;
      const argv = [...runcBase(this.ctx), 'create', '--bundle', bundle, '--pid-file', pidFile];
      undo.push('runc state', () => runcDelete(this.ctx, cid));
      const init = await this.launcher.launch(execId, terminal, (sock) => [...argv, ...(sock ? ['--console-socket', sock] : []), cid], {
        pidFile,
      });
      const newPidNs = (guestSpec.linux?.namespaces ?? []).some((n) => n.type === 'pid');
      this.containers.set(cid, {
        id: cid,
        execId,
        bundle,
        rootfs,
        cgroupsPath: guestSpec.linux!.cgroupsPath!,
        storages: mount_points,
        init,
        execs: new Map(),
        started: false,
        newPidNs,
      });
      return { pid: init.mon.pid };
    } catch (e) {
      await undo.unwind();
      throw e;
    }
  }

  private get(cid: string): Container {
    const c = this.containers.get(cid);
    if (!c) throw new AgentError('E_NOT_FOUND', `container ${cid} not found`);
    return c;
  }

  /** The process a (container_id, exec_id) pair names. */
  process(cid: string, eid: string): AgentProcess {
    if (cid === '') return this.root.get(eid);
    const c = this.get(cid);
    if (eid === '' || eid === c.execId) return c.init;
    const p = c.execs.get(eid);
    if (!p) throw new AgentError('E_NOT_FOUND', `container ${cid} has no process ${eid}`);
    return p;
  }

  async start(cid: string): Promise<void> {
    const c = this.get(cid);
    if (c.started) throw new AgentError('E_FAILED_PRECONDITION', `container ${cid} was started already`);
    if (c.init.exited) throw new AgentError('E_FAILED_PRECONDITION', `container ${cid} has stopped`);
    await runcStart(this.ctx, cid);
    c.started = true;
  }

  async exec(cid: string, eidIn: string, procIn: unknown): Promise<{ pid: number }> {
    const eid = checkExecId(eidIn);
    const proc = checkOciProcess(procIn, 'process');
    const terminal = proc.terminal === true;
    if (cid === '') return this.root.exec(eid, proc);
    const c = this.get(cid);
    if (eid === c.execId || c.execs.has(eid)) throw new AgentError('E_ALREADY_EXISTS', `container ${cid} has a process ${eid} already`);
    if (!c.started || c.init.exited) throw new AgentError('E_FAILED_PRECONDITION', `container ${cid} is not running`);
    const n = ++this.seq;
    const procFile = join(c.bundle, `exec-${n}.json`);
    const pidFile = join(c.bundle, `exec-${n}.pid`);
    await fsp().writeFile(procFile, JSON.stringify(proc));
    const argv = [...runcBase(this.ctx), 'exec', '--detach', '--pid-file', pidFile, '--process', procFile];
    try {
      const p = await this.launcher.launch(eid, terminal, (sock) => [...argv, ...(sock ? ['--console-socket', sock] : []), cid], {
        pidFile,
      });
      c.execs.set(eid, p);
      return { pid: p.mon.pid };
    } finally {
      await fsp().rm(procFile, { force: true });
      await fsp().rm(pidFile, { force: true });
    }
  }

  async signal(cid: string, eid: string, sig: number): Promise<void> {
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) throw new AgentError('E_INVALID_ARGUMENT', `signal ${sig} must be 1-64`);
    if (cid !== '' && eid === '') {
      const c = this.get(cid);
      if (c.init.exited && [...c.execs.values()].every((p) => p.exited)) return;
      await runcKillAll(this.ctx, cid, sig);
      return;
    }
    const p = this.process(cid, eid);
    const c = cid === '' ? undefined : this.get(cid);
    // A pid-namespace init ignores signals it has no handler for; Kata turns them into SIGKILL.
    if (c && p === c.init && c.newPidNs && sig !== 9 && p.mon.running && !(await catches(p.mon.pid, sig))) sig = 9;
    p.mon.signal(sig);
  }

  resize(cid: string, eid: string, rows: number, cols: number): void {
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0 || rows > 65535 || cols > 65535)
      throw new AgentError('E_INVALID_ARGUMENT', `window size ${rows}x${cols} must be 0-65535 each`);
    this.process(cid, eid).mon.resize(rows, cols);
  }

  async remove(cid: string, timeoutS = 0): Promise<void> {
    const c = this.get(cid);
    const procs = [c.init, ...c.execs.values()];
    if (procs.some((p) => !p.exited)) {
      await runcKillAll(this.ctx, cid, 9).catch(() => {});
      for (const p of procs) p.mon.signal(9);
      const all = Promise.all(procs.map((p) => p.mon.exited));
      const limit = timeoutS > 0 ? sleep(timeoutS * 1000).then(() => 'timeout' as const) : new Promise<never>(() => {});
      if ((await Promise.race([all, limit])) === 'timeout')
        throw new AgentError('E_FAILED_PRECONDITION', `container ${cid}: processes still alive ${timeoutS} s after SIGKILL`);
    }
    await runcDelete(this.ctx, cid, c.cgroupsPath);
    for (const p of procs) p.mon.destroy();
    await this.unmount(c.rootfs);
    await removeStorages(
      this.ctx.storage,
      c.storages.map((mount_point) => ({ mount_point })),
    );
    await this.removeBundle(c.bundle);
    this.containers.delete(cid);
  }

  list(): { containers: ContainerInfo[] } {
    return {
      containers: [...this.containers.values()].map((c) => ({
        container_id: c.id,
        status: c.init.exited ? 'stopped' : c.started ? 'running' : 'created',
        bundle: c.bundle,
        init: c.init.info(),
        execs: [...c.execs.values()].map((p) => p.info()),
      })),
    };
  }

  private async mount(args: string[]): Promise<void> {
    const r = await this.ctx.run('mount', args, { timeoutMs: 60_000 });
    if (r.exitCode !== 0) throw new AgentError('E_MOUNT', `mount ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
  }

  private async unmount(mp: string): Promise<void> {
    while ((await readMounts(this.ctx.storage.mountsFile)).some((m) => m.mount_point === mp)) {
      const r = await this.ctx.run('umount', [mp], { timeoutMs: 60_000 });
      if (r.exitCode !== 0) throw new AgentError('E_MOUNT', `umount ${mp}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    }
  }

  /** Remove the bundle's own files only: never recursive (the rootfs must be unmounted first). */
  private async removeBundle(bundle: string): Promise<void> {
    await fsp().rm(join(bundle, 'config.json'), { force: true });
    await fsp().rm(join(bundle, 'init.pid'), { force: true });
    await fsp()
      .rmdir(join(bundle, 'rootfs'))
      .catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw new AgentError('E_MOUNT', `cannot remove ${bundle}/rootfs: ${e.message} (still mounted?)`);
      });
    await fsp()
      .rmdir(bundle)
      .catch(() => {});
  }
}
