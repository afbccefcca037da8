/**
 * The registry of sandbox resource kinds. Each entry makes the kind's plugin for one sandbox and
 * says what the kind adds to the status view. The journal's record type, the teardown and the view
 * are derived from this table: a new resource kind is its plugin (a folder or file of its own) plus
 * one entry here.
 */
import type { Attached, FaultHook, ResourcePlugin } from '../../host/plugin.js';
import { volumePlugin, type VolumeConfig, type VolumeResources } from '../../plugins/block/volume-plugin.js';
import { netnsPlugin, type NetnsConfig, type NetnsResources } from '../../plugins/network/netns-plugin.js';
import { rootfsPlugin, type RootfsConfig, type RootfsResources } from '../../plugins/rootfs/mount-plugin.js';
import { endpointPlugin, type EndpointConfig } from '../../plugins/network/plugin.js';
import type { EndpointResources } from '../../plugins/network/resources.js';
import { VirtiofsPlugin, type VirtiofsConfig, type VirtiofsResources } from '../../virtiofsd-manager/index.js';
import type { HypervisorKind } from '../hypervisor/capabilities.js';
import { hypervisorDriver } from '../hypervisor/drivers.js';
import type { VmRecord } from '../hypervisor/hypervisor.js';
import { cgroupPlugin, type CgroupConfig, type CgroupResources } from './cgroup-resource.js';
import { VmResource, type VmConfig } from './vm-resource.js';

/** What the entries need to make the plugins of one sandbox. */
export interface SandboxEnv {
  hypervisor: HypervisorKind;
  faults?: FaultHook;
}

export interface EndpointView {
  name: string;
  type: string;
  tap?: string;
  mac: string;
  mtu: number;
  addresses: string[];
}

/** The parts of the sandbox view that resources contribute. */
export interface ResourceView {
  endpoints: EndpointView[];
  shares: { tag: string; hostDir: string; guestMountPoint: string }[];
  /** Host directories shared into the export (`sandbox share`). */
  volumes: { name: string; source: string; readonly: boolean; guestPath: string }[];
  vm?: { hypervisor: string; pid: number; consoleLog: string; details: Record<string, string | number | boolean> };
  /** Block volumes hot-plugged into the guest (`volume add`). */
  blockVolumes: { name: string; source: string; driver: string; readonly: boolean; guestDevice?: string; mountPoint: string }[];
  /** The host cgroup the sandbox's processes run in (the hierarchies joined, and those the host refused). */
  cgroup?: { path: string; hierarchies: string[]; skipped: string[] };
}

/**
 * Each kind's config (what attach takes, journalled as the intent), data (what attach made,
 * journalled to undo it) and concrete plugin. A new kind adds a line here and an entry in REGISTRY
 * (the compiler insists on both).
 */
interface ResourceKinds {
  cgroup: { config: CgroupConfig; data: CgroupResources; plugin: typeof cgroupPlugin };
  netns: { config: NetnsConfig; data: NetnsResources; plugin: typeof netnsPlugin };
  endpoint: { config: EndpointConfig; data: EndpointResources; plugin: typeof endpointPlugin };
  virtiofs: { config: VirtiofsConfig; data: VirtiofsResources; plugin: VirtiofsPlugin };
  vm: { config: VmConfig; data: VmRecord; plugin: VmResource };
  volume: { config: VolumeConfig; data: VolumeResources; plugin: typeof volumePlugin };
  rootfs: { config: RootfsConfig; data: RootfsResources; plugin: typeof rootfsPlugin };
}

export type ResourceKind = keyof ResourceKinds;
export type ConfigOf<K extends ResourceKind> = ResourceKinds[K]['config'];
export type DataOf<K extends ResourceKind> = ResourceKinds[K]['data'];
/** The concrete plugin of each kind (e.g. VmResource, with its live hypervisor). */
export type SandboxPlugins = { [K in ResourceKind]: ResourceKinds[K]['plugin'] };
/** Every plugin through the one contract (what the generic teardown and hotplug use). */
export type Plugins = { [K in ResourceKind]: ResourcePlugin<K, ConfigOf<K>, DataOf<K>> };

type Registry = {
  [K in ResourceKind]: {
    create(env: SandboxEnv): SandboxPlugins[K];
    view?(attached: Attached<DataOf<K>>, into: ResourceView): void;
  };
};

const REGISTRY: Registry = {
  cgroup: {
    create: () => cgroupPlugin,
    view(a, into) {
      into.cgroup = {
        path: a.resources.path,
        hierarchies: a.resources.joined.map((j) => j.mount),
        skipped: a.resources.skipped.map((s) => `${s.mount}: ${s.why}`),
      };
    },
  },
  netns: { create: () => netnsPlugin },
  endpoint: {
    create: () => endpointPlugin,
    view(a, into) {
      const i = a.guest.interfaces?.[0];
      into.endpoints.push({
        name: i?.name ?? a.resources.link,
        type: i?.type ?? a.resources.type,
        ...(a.resources.tap || a.resources.preattachedTap ? { tap: a.resources.tap ?? a.resources.preattachedTap } : {}),
        mac: i?.hwAddr ?? a.resources.guestMac,
        mtu: i?.mtu ?? a.resources.mtu,
        addresses: (i?.IPAddresses ?? []).map((x) => `${x.address}/${x.mask}`),
      });
    },
  },
  virtiofs: {
    create: () => new VirtiofsPlugin(),
    view(a, into) {
      into.shares.push({
        tag: a.resources.tag,
        hostDir: a.resources.shared.mountsDir,
        guestMountPoint: a.guest.storages?.[0]?.mount_point ?? '',
      });
      for (const v of a.resources.shared.shares)
        into.volumes.push({ name: v.name, source: v.source, readonly: v.readonly, guestPath: v.guestPath });
    },
  },
  vm: {
    create: (env) => new VmResource(hypervisorDriver(env.hypervisor), env.faults ? { faults: env.faults } : {}),
    view(a, into) {
      into.vm = {
        hypervisor: a.resources.kind,
        pid: a.resources.daemon.pid,
        consoleLog: a.resources.consoleLog,
        details: a.resources.details,
      };
    },
  },
  volume: {
    create: () => volumePlugin,
    view(a, into) {
      const r = a.resources;
      into.blockVolumes.push({
        name: r.name,
        source: r.source,
        driver: r.driver,
        readonly: r.readonly,
        mountPoint: r.mountPoint,
        ...(r.guestDevice ? { guestDevice: r.guestDevice } : {}),
      });
    },
  },
  rootfs: { create: () => rootfsPlugin },
};

export function createPlugins(env: SandboxEnv): SandboxPlugins {
  return {
    cgroup: REGISTRY.cgroup.create(env),
    netns: REGISTRY.netns.create(env),
    endpoint: REGISTRY.endpoint.create(env),
    virtiofs: REGISTRY.virtiofs.create(env),
    vm: REGISTRY.vm.create(env),
    volume: REGISTRY.volume.create(env),
    rootfs: REGISTRY.rootfs.create(env),
  };
}

const RESOURCE_KINDS: readonly string[] = Object.keys(REGISTRY);

export function isResourceKind(k: string): k is ResourceKind {
  return RESOURCE_KINDS.includes(k);
}

/**
 * One journal record. `intent` is written before a resource is made (its config: what an interrupted
 * attach may have left is swept by convention); `done` replaces it once the resource exists (what
 * undoes it). Both are typed by kind.
 */
export interface IntentRecord<K extends ResourceKind = ResourceKind> {
  id: string;
  kind: K;
  phase: 'intent';
  config: ConfigOf<K>;
  at: string;
}

export interface DoneRecord<K extends ResourceKind = ResourceKind> {
  id: string;
  kind: K;
  phase: 'done';
  data: Attached<DataOf<K>>;
  at: string;
}

export type JournalRecord = { [K in ResourceKind]: IntentRecord<K> | DoneRecord<K> }[ResourceKind];

function emptyView(): ResourceView {
  return { endpoints: [], shares: [], volumes: [], blockVolumes: [] };
}

function viewOne<K extends ResourceKind>(kind: K, data: Attached<DataOf<K>>, into: ResourceView): void {
  REGISTRY[kind].view?.(data, into);
}

/** The resource view of a journal: each done record contributes through its kind's entry. */
export function viewOf(records: readonly JournalRecord[]): ResourceView {
  const v = emptyView();
  for (const r of records) if (r.phase === 'done') viewOne(r.kind, r.data, v);
  return v;
}
