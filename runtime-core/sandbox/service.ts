/**
 * The sandbox's operations without a transport: each MgmtMethods method checks its params and calls
 * the sandbox. The supervisor's HTTP server is a thin adapter over this; the containerd shim's ttRPC
 * service will be another.
 */
import type { Route } from '../../host/agent-types.js';
import { KataError } from '../../host/errors.js';
import type { MgmtMethod, MgmtParams, MgmtResult } from '../supervisor/mgmt-protocol.js';
import type { NetworkOptions } from './assemble.js';
import { agentCall } from './agent-call.js';
import { addInterface, removeInterface } from './network-hotplug.js';
import { addVolume, listVolumes, removeVolume, type VolumeRequest } from './volume-hotplug.js';
import type { Sandbox } from './sandbox.js';

export type SandboxService = { [M in MgmtMethod]: (params: unknown) => Promise<MgmtResult<M>> };

function obj(p: unknown, method: string): Record<string, unknown> {
  if (p === undefined || p === null) return {};
  if (typeof p !== 'object' || Array.isArray(p)) throw new KataError('E_INVALID_ARGUMENT', `${method}: params must be a JSON object`);
  return p as Record<string, unknown>;
}

const bad = (msg: string): KataError => new KataError('E_INVALID_ARGUMENT', msg);

function interfaceParams(p: Record<string, unknown>): MgmtParams<'AddInterface'> {
  if (typeof p.link === 'string') return { link: p.link };
  const i = p.interface;
  if (!i || typeof i !== 'object' || typeof (i as { name?: unknown }).name !== 'string') {
    throw bad('AddInterface needs {link: NAME} or {interface: {name, hwAddr?, mtu?, IPAddresses?}} (Kata agent Interface shape)');
  }
  return { interface: i as Extract<MgmtParams<'AddInterface'>, { interface: unknown }>['interface'] };
}

function volumeParams(p: Record<string, unknown>): VolumeRequest {
  const str = (k: string): string | undefined => {
    const v = p[k];
    if (v !== undefined && typeof v !== 'string') throw bad(`AddVolume ${k} must be a string`);
    return v;
  };
  const source = str('source');
  const nbd = str('nbd');
  if (!source === !nbd)
    throw bad('AddVolume needs {source: PATH} or {nbd: URI} (one of them), and name?, driver?, readonly?, fstype?, options?, mountPoint?');
  const driver = str('driver');
  if (driver !== undefined && driver !== 'virtio-blk' && driver !== 'virtio-scsi')
    throw bad(`AddVolume driver "${driver}" is not virtio-blk or virtio-scsi`);
  const options = p.options;
  if (options !== undefined && (!Array.isArray(options) || !options.every((o) => typeof o === 'string')))
    throw bad('AddVolume options must be an array of strings');
  if (p.readonly !== undefined && typeof p.readonly !== 'boolean') throw bad('AddVolume readonly must be a boolean');
  const name = str('name');
  const fstype = str('fstype');
  const mountPoint = str('mountPoint');
  return {
    ...(source ? { source } : { nbd: nbd! }),
    ...(name ? { name } : {}),
    ...(driver ? { driver } : {}),
    ...(p.readonly === true ? { readonly: true } : {}),
    ...(fstype ? { fstype } : {}),
    ...(options ? { options: options as string[] } : {}),
    ...(mountPoint ? { mountPoint } : {}),
  };
}

export function sandboxService(sb: Sandbox, net: () => NetworkOptions, onShutdown: () => void): SandboxService {
  let shuttingDown: Promise<void> | undefined;
  return {
    GetSandbox: async () => sb.view(),
    GetGuest: async () => {
      const [ifs, routes, mounts] = await Promise.all([sb.agent.listInterfaces(), sb.agent.listRoutes(), sb.agent.listMounts()]);
      return { interfaces: ifs.Interfaces, routes: routes.Routes, mounts: mounts.mounts };
    },
    Share: async (p) => {
      const r = obj(p, 'Share');
      if (typeof r.source !== 'string' || (r.name !== undefined && typeof r.name !== 'string')) {
        throw bad('Share needs {source: string, name?: string, readonly?: boolean}');
      }
      return sb.shareVolume({ source: r.source, readonly: r.readonly === true, ...(typeof r.name === 'string' ? { name: r.name } : {}) });
    },
    Unshare: async (p) => {
      const r = obj(p, 'Unshare');
      if (typeof r.name !== 'string') throw bad('Unshare needs {name: string}');
      await sb.unshareVolume(r.name);
      return { name: r.name, state: 'unshared' as const };
    },
    ListInterfaces: () => sb.agent.listInterfaces(),
    AddInterface: (p) => addInterface(sb, interfaceParams(obj(p, 'AddInterface')), net()),
    RemoveInterface: async (p) => {
      const r = obj(p, 'RemoveInterface');
      if (typeof r.name !== 'string') throw bad('RemoveInterface needs {name: NAME or MAC}');
      await removeInterface(sb, r.name);
      return { name: r.name, state: 'removed' as const };
    },
    ListRoutes: () => sb.agent.listRoutes(),
    UpdateRoutes: async (p) => {
      const r = obj(p, 'UpdateRoutes');
      if (!Array.isArray(r.Routes)) throw bad('UpdateRoutes needs {Routes: [Route...]} (Kata agent shape)');
      return sb.agent.updateRoutes(r.Routes as Route[]);
    },
    AddVolume: (p) => addVolume(sb, volumeParams(obj(p, 'AddVolume'))),
    RemoveVolume: async (p) => {
      const r = obj(p, 'RemoveVolume');
      if (typeof r.name !== 'string') throw bad('RemoveVolume needs {name: string, timeoutMs?: number}');
      if (r.timeoutMs !== undefined && (typeof r.timeoutMs !== 'number' || !Number.isSafeInteger(r.timeoutMs) || r.timeoutMs <= 0)) {
        throw bad('RemoveVolume timeoutMs must be a positive integer (ms)');
      }
      await removeVolume(sb, r.name, typeof r.timeoutMs === 'number' ? r.timeoutMs : undefined);
      return { name: r.name, state: 'removed' as const };
    },
    ListVolumes: async () => ({ volumes: listVolumes(sb) }),
    AgentCall: async (p) => {
      const r = obj(p, 'AgentCall');
      if (typeof r.method !== 'string') throw bad('AgentCall needs {method: string, params?: object, force?: boolean}');
      return { result: await agentCall(sb.agent, r.method, r.params, r.force === true) };
    },
    GetMetrics: async () => {
      const v = sb.view();
      const taps = v.endpoints.flatMap((e) => (e.tap ? [e.tap] : []));
      const netns = v.netns ? { path: v.netns.path, ...(v.netns.name ? { name: v.netns.name } : {}) } : undefined;
      const agent = v.state === 'running' ? sb.agent : undefined;
      // prom-client loads on the first scrape, not in every supervisor's start (about 50 ms).
      const { sandboxMetrics } = await import('./metrics.js');
      return { text: await sandboxMetrics({ id: sb.id, pids: v.pids, netns, taps, agent }) };
    },
    Shutdown: async () => {
      shuttingDown ??= sb.down();
      await shuttingDown;
      setImmediate(onShutdown);
      return { id: sb.id, state: 'removed' as const, timings: sb.timings };
    },
  };
}
