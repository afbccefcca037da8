/**
 * containerd.task.v2.Task on the pod: each method checks and translates its request and calls the
 * pod (pod.ts), answering as containerd expects (research shimv2-and-ttrpc.md §3.1): State and
 * Connect from memory, Wait blocking with the cached exit, NotFound for what is gone, Unimplemented
 * for what a VM shim does not do here (checkpoint, update, stats, pause/resume).
 */
import { fromBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { OciProcess } from '../runtime-core/agent/client.js';
import { GrpcCode } from '../ttrpc/codes.js';
import { TtrpcError } from '../ttrpc/errors.js';
import type { ServiceImpl } from '../ttrpc/server.js';
import { OptionsSchema } from './generated/containerd/pkg/runtimeoptions/v1/api_pb.js';
import { Status } from './generated/containerd/api/types/task/task_pb.js';
import type { Task } from './generated/containerd/runtime/v2/task/shim_pb.js';
import type { Pod } from './pod.js';
import type { ShimProcess } from './process.js';

const unimplemented = (what: string) => (): never => {
  throw new TtrpcError(GrpcCode.UNIMPLEMENTED, `${what} is not implemented by the kata-resources shim`);
};

function statusOf(p: ShimProcess): Status {
  return p.state === 'created' ? Status.CREATED : p.state === 'running' ? Status.RUNNING : Status.STOPPED;
}

/** runtimeoptions.v1.Options.config_path from CreateTaskRequest.options (what CRI and `ctr --runtime-config-path` send). */
function configPathOf(options: { typeUrl: string; value: Uint8Array } | undefined): string | undefined {
  if (!options?.typeUrl.endsWith('runtimeoptions.v1.Options')) return undefined;
  const p = fromBinary(OptionsSchema, options.value).configPath;
  return p || undefined;
}

/** An exec's process spec: an Any whose value is the OCI Process as JSON. */
function processSpec(spec: { value: Uint8Array } | undefined, execId: string): OciProcess {
  if (!spec) throw new TtrpcError(GrpcCode.INVALID_ARGUMENT, `exec ${execId} has no process spec`);
  try {
    return JSON.parse(Buffer.from(spec.value).toString('utf8')) as OciProcess;
  } catch (e) {
    throw new TtrpcError(GrpcCode.INVALID_ARGUMENT, `exec ${execId}: the process spec is not JSON (${(e as Error).message})`);
  }
}

export function taskService(pod: Pod, opts: { shimPid: number; onShutdown: () => void }): ServiceImpl<typeof Task> {
  return {
    state: (r) => {
      const { proc, bundle } = pod.state(r.id, r.execId);
      return {
        id: r.execId || r.id,
        bundle,
        pid: proc.state === 'created' && !r.execId ? pod.taskPid : proc.pid,
        status: statusOf(proc),
        stdin: proc.paths.stdin,
        stdout: proc.paths.stdout,
        stderr: proc.paths.stderr,
        terminal: proc.paths.terminal,
        exitStatus: proc.exit?.status ?? 0,
        ...(proc.exit ? { exitedAt: timestampFromDate(proc.exit.at) } : {}),
        execId: r.execId,
      };
    },
    create: async (r) => {
      const configPath = configPathOf(r.options) ?? process.env.KATA_RESOURCES_CONFIG ?? process.env.KATA_CONF_FILE;
      const pid = await pod.create({
        id: r.id,
        bundle: r.bundle,
        rootfs: r.rootfs.map((m) => ({ type: m.type, source: m.source, options: [...m.options] })),
        terminal: r.terminal,
        stdin: r.stdin,
        stdout: r.stdout,
        stderr: r.stderr,
        ...(configPath ? { configPath } : {}),
      });
      return { pid };
    },
    start: async (r) => ({ pid: await pod.start(r.id, r.execId) }),
    delete: async (r) => {
      const d = await pod.delete(r.id, r.execId);
      return { pid: d.pid, exitStatus: d.exit.status, exitedAt: timestampFromDate(d.exit.at) };
    },
    pids: (r) => {
      pod.state(r.id, '');
      return { processes: [{ pid: pod.taskPid }] };
    },
    kill: async (r) => {
      await pod.kill(r.id, r.execId, r.signal, r.all);
      return {};
    },
    exec: (r) => {
      pod.exec(r.id, r.execId, processSpec(r.spec, r.execId), { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal });
      return {};
    },
    resizePty: async (r) => {
      await pod.resize(r.id, r.execId, r.width, r.height);
      return {};
    },
    closeIO: (r) => {
      if (r.stdin) pod.closeIO(r.id, r.execId);
      return {};
    },
    wait: async (r) => {
      const e = await pod.wait(r.id, r.execId);
      return { exitStatus: e.status, exitedAt: timestampFromDate(e.at) };
    },
    connect: () => ({ shimPid: opts.shimPid, taskPid: pod.taskPid, version: '2' }),
    shutdown: () => {
      if (pod.empty) setImmediate(opts.onShutdown);
      return {};
    },
    pause: unimplemented('Pause'),
    resume: unimplemented('Resume'),
    checkpoint: unimplemented('Checkpoint'),
    update: unimplemented('Update'),
    stats: unimplemented('Stats'),
  };
}
