/**
 * A small CRI v1 client of the test suite's own, speaking to containerd's CRI plugin over gRPC on
 * containerd's socket exactly as kubelet does (there is no kubelet or crictl on Debian 12). The
 * definition is the CRI api.proto of Kubernetes 1.26 (test/fixtures/cri), loaded at run time with
 * @grpc/proto-loader; only the calls and fields the tests use are typed here. Field names are the
 * proto's own (snake_case), 64-bit integers are JS numbers, enums their names.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = join(import.meta.dirname, '..', '..', '..', '..', 'test', 'fixtures', 'cri', 'api.proto');

export interface KeyValue {
  key: string;
  value: string;
}

export interface LinuxContainerResources {
  cpu_period?: number;
  cpu_quota?: number;
  cpu_shares?: number;
  memory_limit_in_bytes?: number;
}

export interface CriMount {
  container_path: string;
  host_path: string;
  readonly?: boolean;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  log_directory?: string;
  dns_config?: { servers: string[]; searches?: string[]; options?: string[] };
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: {
    cgroup_parent?: string;
    resources?: LinuxContainerResources;
    security_context?: { namespace_options?: { network?: 'POD' | 'CONTAINER' | 'NODE' } };
  };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  envs?: KeyValue[];
  mounts?: CriMount[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  log_path?: string;
  linux?: { resources?: LinuxContainerResources };
}

export type ContainerStateName = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export interface ContainerStatus {
  id: string;
  state: ContainerStateName;
  created_at: number;
  started_at: number;
  finished_at: number;
  exit_code: number;
  reason: string;
  message: string;
  log_path: string;
}

export interface PodSandboxStatus {
  id: string;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  network?: { ip: string };
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exit_code: number;
}

type Unary = (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

/** A gRPC error from containerd, with its status code and details (what kubelet would log). */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`CRI ${method}: ${grpc.status[code] ?? code}: ${details}`);
  }
}

export class CriClient {
  private readonly runtime: grpc.Client & Record<string, Unary>;
  private readonly images: grpc.Client & Record<string, Unary>;

  constructor(socket: string) {
    const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } };
    };
    const creds = grpc.credentials.createInsecure();
    this.runtime = new pkg.runtime.v1.RuntimeService(`unix://${socket}`, creds) as grpc.Client & Record<string, Unary>;
    this.images = new pkg.runtime.v1.ImageService(`unix://${socket}`, creds) as grpc.Client & Record<string, Unary>;
  }

  private call<T>(client: Record<string, Unary>, method: string, req: unknown, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = client[method]!.bind(client);
      fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new CriError(method, err.code, err.details));
        else resolve(res as T);
      });
    });
  }

  version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }> {
    return this.call(this.runtime, 'Version', {}, 10_000);
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler: string, timeoutMs = 600_000): Promise<string> {
    const r = await this.call<{ pod_sandbox_id: string }>(
      this.runtime,
      'RunPodSandbox',
      { config, runtime_handler: runtimeHandler },
      timeoutMs,
    );
    return r.pod_sandbox_id;
  }

  async podSandboxStatus(id: string): Promise<PodSandboxStatus> {
    const r = await this.call<{ status: PodSandboxStatus }>(this.runtime, 'PodSandboxStatus', { pod_sandbox_id: id }, 30_000);
    return r.status;
  }

  async listPodSandbox(): Promise<{ id: string; state: string }[]> {
    return (await this.call<{ items: { id: string; state: string }[] }>(this.runtime, 'ListPodSandbox', {}, 30_000)).items;
  }

  async stopPodSandbox(id: string, timeoutMs = 300_000): Promise<void> {
    await this.call(this.runtime, 'StopPodSandbox', { pod_sandbox_id: id }, timeoutMs);
  }

  async removePodSandbox(id: string, timeoutMs = 300_000): Promise<void> {
    await this.call(this.runtime, 'RemovePodSandbox', { pod_sandbox_id: id }, timeoutMs);
  }

  async createContainer(podId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig, timeoutMs = 300_000): Promise<string> {
    const r = await this.call<{ container_id: string }>(
      this.runtime,
      'CreateContainer',
      { pod_sandbox_id: podId, config, sandbox_config: sandboxConfig },
      timeoutMs,
    );
    return r.container_id;
  }

  async startContainer(id: string, timeoutMs = 300_000): Promise<void> {
    await this.call(this.runtime, 'StartContainer', { container_id: id }, timeoutMs);
  }

  async stopContainer(id: string, timeoutS = 0, timeoutMs = 300_000): Promise<void> {
    await this.call(this.runtime, 'StopContainer', { container_id: id, timeout: timeoutS }, timeoutMs);
  }

  async removeContainer(id: string, timeoutMs = 300_000): Promise<void> {
    await this.call(this.runtime, 'RemoveContainer', { container_id: id }, timeoutMs);
  }

  async containerStatus(id: string): Promise<ContainerStatus> {
    return (await this.call<{ status: ContainerStatus }>(this.runtime, 'ContainerStatus', { container_id: id }, 30_000)).status;
  }

  /** ContainerStatus until the container is in `state` (or the time is up: then the last status). */
  async waitContainer(id: string, state: ContainerStateName, timeoutMs = 300_000): Promise<ContainerStatus> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.containerStatus(id);
      if (s.state === state || Date.now() > end) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async listContainers(): Promise<{ id: string; pod_sandbox_id: string; state: string }[]> {
    return (
      await this.call<{ containers: { id: string; pod_sandbox_id: string; state: string }[] }>(this.runtime, 'ListContainers', {}, 30_000)
    ).containers;
  }

  execSync(id: string, cmd: string[], timeoutS = 120): Promise<ExecSyncResult> {
    return this.call(this.runtime, 'ExecSync', { container_id: id, cmd, timeout: timeoutS }, (timeoutS + 60) * 1000);
  }

  async imageStatus(image: string): Promise<{ id: string } | null> {
    const r = await this.call<{ image: { id: string } | null }>(this.images, 'ImageStatus', { image: { image } }, 30_000);
    return r.image;
  }

  close(): void {
    this.runtime.close();
    this.images.close();
  }
}
