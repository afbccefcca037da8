/**
 * The host's OCI spec reworked for the guest, as Kata's runtime and agent do it
 * (virtcontainers/kata_agent.go constrainGRPCSpec, agent rpc.rs update_container_namespaces):
 *
 * - root.path: the rootfs bind in the bundle (Kata: /run/kata-containers/<cid>/rootfs);
 * - namespaces: network (the container shares the VM's, which is the pod's network), cgroup and
 *   time are dropped; every other namespace path is emptied (new namespaces in the guest);
 * - hooks removed (they run on the host);
 * - resources: devices relaxed to allow-all (the VM is the boundary and host device numbers mean
 *   nothing here), blockIO, network, pids, cpu.cpus/mems (host cpusets) cleared;
 * - cgroupsPath made a cgroupfs path under the guest's cgroup2 root (a systemd "slice:prefix:name"
 *   is turned into /slice/prefix-name; none gives /kata/<cid>);
 * - apparmor/SELinux labels dropped (the guest has no LSM);
 * - bind mounts must name a guest path that exists (the shim rewrites host paths to the share).
 */
import { existsSync } from 'node:fs';
import { AgentError, type OciSpec } from './protocol.js';

const DROPPED_NAMESPACES = new Set(['network', 'cgroup', 'time']);

function guestCgroupsPath(path: string | undefined, cid: string): string {
  if (!path) return `/kata/${cid}`;
  const systemd = /^([^/:]*):([^:]*):([^:]*)$/.exec(path);
  if (systemd) {
    const slice = systemd[1]!.replace(/\.slice$/, '') || 'kata';
    return `/${slice}/${[systemd[2], systemd[3]].filter(Boolean).join('-')}`;
  }
  const clean = path
    .split('/')
    .filter((p) => p !== '' && p !== '.' && p !== '..')
    .join('/');
  return clean ? `/${clean}` : `/kata/${cid}`;
}

export interface ReworkOptions {
  containerId: string;
  /** Guest path of the rootfs (the bind in the bundle). */
  rootfs: string;
  /** Test hook: whether a guest path exists. */
  exists?: (p: string) => boolean;
}

export function reworkSpec(spec: OciSpec, o: ReworkOptions): OciSpec {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec))
    throw new AgentError('E_INVALID_ARGUMENT', 'CreateContainer needs OCI: the OCI runtime spec (config.json) as an object');
  if (!spec.process) throw new AgentError('E_INVALID_ARGUMENT', 'the OCI spec has no process');
  const exists = o.exists ?? existsSync;
  const out: OciSpec = structuredClone(spec);
  out.root = { ...(spec.root ?? {}), path: o.rootfs };
  delete out.hooks;
  const proc = out.process!;
  delete proc.apparmorProfile;
  delete proc.selinuxLabel;
  const linux = (out.linux ??= {});
  delete linux.mountLabel;
  linux.namespaces = (linux.namespaces ?? []).filter((n) => !DROPPED_NAMESPACES.has(n.type)).map((n) => ({ type: n.type }));
  linux.cgroupsPath = guestCgroupsPath(linux.cgroupsPath, o.containerId);
  const res = (linux.resources ??= {});
  res.devices = [{ allow: true, access: 'rwm' }];
  delete res.blockIO;
  delete res.network;
  delete res.pids;
  const cpu = res.cpu as Record<string, unknown> | undefined;
  if (cpu) {
    delete cpu.cpus;
    delete cpu.mems;
  }
  for (const m of out.mounts ?? []) {
    const bind = m.type === 'bind' || (m.options ?? []).some((x) => x === 'bind' || x === 'rbind');
    if (bind && m.source && !exists(m.source))
      throw new AgentError(
        'E_INVALID_ARGUMENT',
        `mount ${m.destination}: bind source ${m.source} does not exist in the guest (share it and pass the guest path)`,
      );
  }
  return out;
}
