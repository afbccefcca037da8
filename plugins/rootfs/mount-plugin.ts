/**
 * A container's root filesystem assembled on the host, as containerd's runc shim does it: the
 * CreateTask rootfs mounts (an overlay from the overlayfs snapshotter; binds from the native one)
 * mounted in order onto the bundle's `rootfs` directory. The sandbox then shares that directory
 * into the guest. Undo unmounts what was mounted there, newest first; the target directory is
 * containerd's and stays.
 */
import { existsSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { KataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';
import { readMountinfo, unmount } from '../../host/mounts.js';
import { checkpoint, type Attached, type PluginContext, type ResourcePlugin } from '../../host/plugin.js';

/** containerd's Mount (types/mount.proto), as plain data. */
export interface ContainerdMount {
  type: string;
  source: string;
  options: string[];
}

export interface RootfsConfig {
  containerId: string;
  /** Where to mount (the bundle's rootfs directory). */
  target: string;
  mounts: ContainerdMount[];
}

export interface RootfsResources {
  containerId: string;
  target: string;
  /** How many mounts were stacked on target by us (undone that many times). */
  mounted: number;
}

const TYPES = new Set(['overlay', 'bind', 'rbind', 'tmpfs', 'ext4', 'xfs']);

function checkMount(m: ContainerdMount, cid: string): void {
  const type = m.type || 'bind';
  if (!TYPES.has(type) && !m.options.includes('bind') && !m.options.includes('rbind')) {
    throw new KataError(
      'E_UNSUPPORTED',
      `container ${cid}: rootfs mount type "${m.type}" is not supported (overlay, bind, tmpfs, ext4, xfs)`,
      {
        containerId: cid,
        type: m.type,
      },
    );
  }
  for (const o of m.options) {
    if (typeof o !== 'string' || /[\0\n]/.test(o))
      throw new KataError('E_INVALID_ARGUMENT', `container ${cid}: rootfs mount option ${JSON.stringify(o)} is not valid`);
  }
}

function mountArgs(m: ContainerdMount, target: string): string[] {
  const bind = m.type === 'bind' || m.type === 'rbind' || m.options.includes('bind') || m.options.includes('rbind');
  const opts = m.options.filter((o) => o !== 'bind' && o !== 'rbind');
  if (bind)
    return [
      '--no-canonicalize',
      m.options.includes('rbind') || m.type === 'rbind' ? '--rbind' : '--bind',
      ...(opts.length ? ['-o', opts.join(',')] : []),
      m.source,
      target,
    ];
  return ['--no-canonicalize', '-t', m.type, ...(opts.length ? ['-o', opts.join(',')] : []), m.source || m.type, target];
}

async function unmountTarget(ctx: PluginContext, r: RootfsResources): Promise<void> {
  for (let i = 0; i < r.mounted; i++) {
    if (!readMountinfo().some((m) => m.mountPoint === r.target)) return;
    await unmount(r.target, ctx.log);
  }
}

export const rootfsPlugin: ResourcePlugin<'rootfs', RootfsConfig, RootfsResources> = {
  kind: 'rootfs',
  async attach(ctx, c) {
    if (!isAbsolute(c.target) || !existsSync(c.target) || !statSync(c.target).isDirectory()) {
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `container ${c.containerId}: rootfs target ${c.target} is not an existing directory (the bundle's rootfs)`,
        {
          target: c.target,
        },
      );
    }
    for (const m of c.mounts) checkMount(m, c.containerId);
    const res: RootfsResources = { containerId: c.containerId, target: c.target, mounted: 0 };
    try {
      for (const m of c.mounts) {
        await checkpoint(ctx, 'rootfs:mount');
        try {
          await run('mount', mountArgs(m, c.target), { timeoutMs: 30_000 });
        } catch (e) {
          throw new KataError(
            'E_MOUNT',
            `container ${c.containerId}: mounting its rootfs (${m.type} ${m.source}) on ${c.target} failed: ${(e as Error).message}`,
            {
              target: c.target,
            },
            { cause: e },
          );
        }
        res.mounted++;
      }
    } catch (e) {
      await unmountTarget(ctx, res).catch(() => {});
      throw e;
    }
    return { kind: 'rootfs', resources: res, devices: [], guest: {} };
  },
  detach: (ctx, a: Attached<RootfsResources>) => unmountTarget(ctx, a.resources),
  recover: (ctx, a: Attached<RootfsResources>) => unmountTarget(ctx, a.resources),
  /** An interrupted mount: at most as many mounts as asked may sit on the target (ours: nothing else mounts there). */
  async sweep(ctx, c) {
    await unmountTarget(ctx, { containerId: c.containerId, target: c.target, mounted: c.mounts.length });
  },
};
