/**
 * The supervisor's management API as one typed method map (like the agent's AgentMethods): the
 * transport-free SandboxService (sandbox/service.ts) implements it, the HTTP adapter (server.ts)
 * serves it on a unix socket (0600) in the sandbox directory, like Kata's shim-monitor.sock, and the
 * CLI's client (mgmt-client.ts) calls it; all three compile against this file.
 *
 *   POST /<Method>   JSON params -> JSON result; errors {error: {code, message}} with the code's status
 *   GET /Exec        with `Upgrade: kata-exec/1`: the connection becomes an exec stream (exec/frames.ts)
 */
import type { Interface, Route } from '../../host/agent-types.js';
import type { ShareRecord } from '../../virtiofsd-manager/index.js';
import type { MountInfo } from '../agent/client.js';
import type { VolumeResources } from '../../plugins/block/volume-plugin.js';
import type { InterfaceRequest } from '../sandbox/network-hotplug.js';
import type { VolumeRequest } from '../sandbox/volume-hotplug.js';
import type { SandboxView } from '../sandbox/view.js';

export const MGMT_SOCKET = 'supervisor.sock';

type None = Record<string, never>;

export interface MgmtMethods {
  /** The sandbox as the CLI prints it. */
  GetSandbox: { params: None; result: SandboxView };
  /** What the agent reports: interfaces, routes, mounts. */
  GetGuest: { params: None; result: { interfaces: Interface[]; routes: Route[]; mounts: MountInfo[] } };
  /** A host directory into the export. */
  Share: { params: { source: string; name?: string; readonly?: boolean }; result: ShareRecord };
  Unshare: { params: { name: string }; result: { name: string; state: 'unshared' } };
  ListInterfaces: { params: None; result: { Interfaces: Interface[] } };
  AddInterface: { params: InterfaceRequest; result: Interface };
  RemoveInterface: { params: { name: string }; result: { name: string; state: 'removed' } };
  ListRoutes: { params: None; result: { Routes: Route[] } };
  UpdateRoutes: { params: { Routes: Route[] }; result: { Routes: Route[] } };
  /** A block volume hot-plugged and mounted in the guest. */
  AddVolume: { params: VolumeRequest; result: VolumeResources };
  RemoveVolume: { params: { name: string; timeoutMs?: number }; result: { name: string; state: 'removed' } };
  ListVolumes: { params: None; result: { volumes: VolumeResources[] } };
  /** One request to the guest agent (agent-call.ts: state-changing methods only with force). */
  AgentCall: { params: { method: string; params?: unknown; force?: boolean }; result: { result: unknown } };
  /** The sandbox's metrics in Prometheus text format (host and guest side: sandbox/metrics.ts). */
  GetMetrics: { params: None; result: { text: string } };
  /** Tear the sandbox down; answered when done, then the supervisor exits. */
  Shutdown: { params: None; result: { id: string; state: 'removed'; timings: Record<string, number> } };
}

export type MgmtMethod = keyof MgmtMethods;
export type MgmtParams<M extends MgmtMethod> = MgmtMethods[M]['params'];
export type MgmtResult<M extends MgmtMethod> = MgmtMethods[M]['result'];
