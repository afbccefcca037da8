import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { bindMount, detachExact, isMountPoint, mountsUnder, unmount, unmountAllUnder } from '../host/mounts.js';
import { validateId } from '../host/names.js';
import { UndoStack } from '../host/undo.js';
import { GUEST_SHARE_DIR } from './config.js';
import { detachAt, makeMountPoint, mountIdAt, removeMountPoint } from './mount-points.js';
import { checkContainerId, checkShareName, removeTreeSafely, safeBase, unsafe } from './share-names.js';
import { openShareSource, type ReachablePolicy } from './share-source.js';

/**
 * The host side of a sandbox's virtio-fs share, laid out like Kata's:
 *
 *   <root>/sandboxes/<sid>            a private bind of itself (nothing here propagates to the host)
 *   <root>/sandboxes/<sid>/mounts     read-write; a shared mount of its own: binds are made here
 *   <root>/sandboxes/<sid>/shared     read-only bind of mounts, slave: sees every bind made in
 *                                     mounts, and is what virtiofsd exports
 *   <root>/sandboxes/<sid>/private    scratch for the first bind of each share (see below)
 *
 * Every share is bound into private/ first, with its flags (ro for a read-only volume, nosuid and
 * nodev for all), and that mount is bound into mounts/ (a bind copies the flags, and so does the
 * propagation into shared/), then the private mount is dropped: a remount made in mounts/ would
 * not reach the copy already propagated to shared/ (CVE-2020-28914 for the read-only flag).
 *
 * Sources are opened first and bound through /proc/self/fd, after checking where the open file
 * really is: a symlink swapped in between the check and the mount cannot redirect the bind.
 *
 * Inside a read-write share every path component belongs to the guest. So the host side never
 * resolves a path below a share root again: share names may not lie inside another share,
 * mount points are made and removed one lstat-checked component at a time below mounts/, unshare
 * acts only on a recorded share and detaches the mount found at its recorded mount point after
 * checking the mount id of the open mount point (host/safe-path.ts, host/mounts.ts detachExact),
 * and share sources are resolved without following symlinks where a guest could have made them.
 * Every share is bound nosuid,nodev: nothing reached through the export (by virtiofsd or by a
 * host process under this tree) is a device or a set-uid program, and the sandbox directory is
 * closed to other users (0700).
 */

export interface ShareRecord {
  kind: 'rootfs' | 'volume';
  containerId: string;
  /** Path relative to mounts/ (and to the guest share dir). */
  name: string;
  /** Host mount point under mounts/. */
  hostPath: string;
  /** Where the guest sees it. */
  guestPath: string;
  /** The source as resolved when it was bound. */
  source: string;
  readonly: boolean;
  /** Id of the share's mount at hostPath (/proc/self/mountinfo), as made. */
  mountId?: number;
}

export interface SharedDirState {
  root: string;
  sandboxId: string;
  sandboxDir: string;
  mountsDir: string;
  sharedDir: string;
  privateDir: string;
  shares: ShareRecord[];
}

export interface VolumeShareRequest {
  containerId: string;
  /** Host path of the volume (file or directory). */
  source: string;
  /** Destination inside the container; its basename names the share. */
  destination?: string;
  readonly: boolean;
  /** Explicit path relative to mounts/ (default `<cid>-<16 hex>-<basename(destination)>`). */
  name?: string;
  /** The source must resolve inside one of these directories (overrides the manager's volumeRoots). */
  allowedRoots?: string[];
  /** Follow symlinks in the source path (never below a read-write share or the sandbox's tree). Default false. */
  allowSymlinks?: boolean;
}

/** The manager-wide rules for share sources (from the configuration). */
export interface SharePolicy {
  /** Sources must resolve inside one of these (empty: anywhere). */
  volumeRoots?: readonly string[];
  /** A read-write source other host users can reach: refuse (default) or allow with a warning. */
  rwShareReachable?: ReachablePolicy;
}

function sandboxDirOf(root: string, sandboxId: string): string {
  return join(root, 'sandboxes', sandboxId);
}

export class SharedDir {
  private readonly shareList: ShareRecord[] = [];

  private constructor(
    readonly root: string,
    readonly sandboxId: string,
    readonly log: Logger,
  ) {}

  get sandboxDir(): string {
    return sandboxDirOf(this.root, this.sandboxId);
  }
  get mountsDir(): string {
    return join(this.sandboxDir, 'mounts');
  }
  get sharedDir(): string {
    return join(this.sandboxDir, 'shared');
  }
  get privateDir(): string {
    return join(this.sandboxDir, 'private');
  }

  /** Create the layout and its mounts. Undoes its own steps on failure. */
  static async prepare(root: string, sandboxId: string, log: Logger): Promise<SharedDir> {
    validateId(sandboxId);
    mkdirSync(join(root, 'sandboxes'), { recursive: true, mode: 0o755 });
    // Work on the real path: mountinfo reports real paths.
    const realRoot = realpathSync(root);
    const sd = new SharedDir(realRoot, sandboxId, log);
    if (mountsUnder(sd.sandboxDir).length > 0) {
      throw new KataError(
        'E_SANDBOX_EXISTS',
        `shared directory ${sd.sandboxDir} is already mounted (a sandbox ${sandboxId} exists or was left by a crash: recover it first)`,
        { sandboxId, path: sd.sandboxDir },
      );
    }
    // An unmounted leftover (a crash between unmount and removal) is removed first.
    if (existsSync(sd.sandboxDir)) await SharedDir.teardownAt(sd.sandboxDir, log);
    await new UndoStack(log).guard(async (undo) => {
      mkdirSync(sd.sandboxDir, { recursive: true, mode: 0o700 });
      undo.push('remove sandbox dir', () => SharedDir.teardownAt(sd.sandboxDir, log));
      mkdirSync(sd.mountsDir, { mode: 0o755 });
      mkdirSync(sd.sharedDir, { mode: 0o755 });
      mkdirSync(sd.privateDir, { mode: 0o700 });
      await bindMount(sd.sandboxDir, sd.sandboxDir, { propagation: 'private' });
      await bindMount(sd.mountsDir, sd.mountsDir, { propagation: 'shared' });
      // Bind of a shared mount joins its peer group; --make-slave then makes it receive only.
      await bindMount(sd.mountsDir, sd.sharedDir, { readonly: true, propagation: 'slave' });
    });
    log.debug({ sandboxDir: sd.sandboxDir }, 'virtio-fs shared directory prepared');
    return sd;
  }

  /** Re-create the object for a layout prepared earlier (e.g. by this runtime before a restart). */
  static fromState(state: SharedDirState, log: Logger): SharedDir {
    const sd = new SharedDir(state.root, state.sandboxId, log);
    sd.shareList.push(...state.shares);
    return sd;
  }

  state(): SharedDirState {
    return {
      root: this.root,
      sandboxId: this.sandboxId,
      sandboxDir: this.sandboxDir,
      mountsDir: this.mountsDir,
      sharedDir: this.sharedDir,
      privateDir: this.privateDir,
      shares: this.shareList.map((s) => ({ ...s })),
    };
  }

  shares(): ShareRecord[] {
    return this.shareList.map((s) => ({ ...s }));
  }

  /** Bind a container's (host-mounted) rootfs read-write to mounts/<cid>/rootfs. */
  async shareRootfs(
    containerId: string,
    rootfs: string,
    opts: { allowedRoots?: string[]; allowSymlinks?: boolean } = {},
    policy: SharePolicy = {},
  ): Promise<ShareRecord> {
    const cid = checkContainerId(containerId);
    return this.share(
      {
        kind: 'rootfs',
        containerId: cid,
        name: `${cid}/rootfs`,
        source: rootfs,
        readonly: false,
        allowedRoots: opts.allowedRoots ?? [...(policy.volumeRoots ?? [])],
        allowSymlinks: opts.allowSymlinks ?? false,
      },
      policy,
    );
  }

  /** Bind a volume into mounts/ (through private/, see the class comment). */
  async shareVolume(req: VolumeShareRequest, policy: SharePolicy = {}): Promise<ShareRecord> {
    const cid = checkContainerId(req.containerId);
    const name =
      req.name !== undefined
        ? checkShareName(req.name)
        : `${cid}-${randomBytes(8).toString('hex')}-${safeBase(req.destination ?? req.source)}`;
    return this.share(
      {
        kind: 'volume',
        containerId: cid,
        name,
        source: req.source,
        readonly: req.readonly,
        allowedRoots: req.allowedRoots ?? [...(policy.volumeRoots ?? [])],
        allowSymlinks: req.allowSymlinks ?? false,
      },
      policy,
    );
  }

  /** Refuse a name that is taken, lies inside another share, or would cover one. */
  private checkFreeName(name: string): void {
    for (const s of this.shareList) {
      if (s.name === name) throw new KataError('E_INVALID_ARGUMENT', `${name} is already shared in sandbox ${this.sandboxId}`, { name });
      if (name.startsWith(`${s.name}/`)) {
        throw unsafe(
          `share destination ${name} lies inside the share ${s.name} of sandbox ${this.sandboxId}: its mount point would be made in that share's source, where the guest decides what the path means; choose a name outside other shares`,
          { name, inside: s.name },
        );
      }
      if (s.name.startsWith(`${name}/`)) {
        throw new KataError('E_INVALID_ARGUMENT', `share destination ${name} would cover the share ${s.name}; choose another name`, {
          name,
        });
      }
    }
  }

  private async share(
    r: {
      kind: ShareRecord['kind'];
      containerId: string;
      name: string;
      source: string;
      readonly: boolean;
      allowedRoots: string[];
      allowSymlinks: boolean;
    },
    policy: SharePolicy,
  ): Promise<ShareRecord> {
    checkShareName(r.name);
    this.checkFreeName(r.name);
    const src = openShareSource({
      source: r.source,
      readonly: r.readonly,
      allowSymlinks: r.allowSymlinks,
      allowedRoots: r.allowedRoots,
      guestWritable: this.shareList.filter((s) => !s.readonly).map((s) => s.source),
      ownTree: this.sandboxDir,
      reachable: policy.rwShareReachable ?? 'refuse',
    });
    if (src.warning) this.log.warn({ source: r.source }, src.warning);
    try {
      const isDir = src.st.isDirectory();
      const undo = new UndoStack(this.log);
      const { target, mountId } = await undo.guard(async () => {
        const target = makeMountPoint(this.mountsDir, r.name, isDir, undo);
        // Flags set by a remount do not reach the copy already propagated to shared/ (nor
        // virtiofsd's view): bind into private/ with them first, then bind that into mounts/.
        const priv = join(this.privateDir, `${randomBytes(6).toString('hex')}-${basename(r.name).slice(0, 64)}`);
        if (isDir) mkdirSync(priv, { mode: 0o700 });
        else writeFileSync(priv, '', { mode: 0o600, flag: 'wx' });
        try {
          await bindMount(src.procPath, priv, { readonly: r.readonly, options: ['nosuid', 'nodev'] });
          try {
            await bindMount(priv, target);
            undo.push('unmount share', async () => void (await detachExact(target)));
          } finally {
            await unmount(priv, this.log);
          }
        } finally {
          if (!isMountPoint(priv)) removeTreeSafely(priv, []);
        }
        return { target, mountId: mountIdAt(this.mountsDir, r.name) };
      });
      const rec: ShareRecord = {
        kind: r.kind,
        containerId: r.containerId,
        name: r.name,
        hostPath: target,
        guestPath: `${GUEST_SHARE_DIR}${r.name}`,
        source: src.path,
        readonly: r.readonly,
        mountId,
      };
      this.shareList.push(rec);
      this.log.debug({ share: rec }, 'shared into virtio-fs');
      return { ...rec };
    } finally {
      closeSync(src.fd);
    }
  }

  /**
   * Exact inverse of a share: detach its mount (its copy in shared/ goes with it) and remove the
   * mount point. Only a recorded share can be unshared: any other name is E_INVALID_ARGUMENT.
   */
  async unshare(nameOrRecord: string | ShareRecord): Promise<void> {
    const name = typeof nameOrRecord === 'string' ? nameOrRecord : nameOrRecord.name;
    checkShareName(name);
    const i = this.shareList.findIndex((s) => s.name === name);
    if (i < 0) {
      const known = this.shareList.map((s) => s.name);
      throw new KataError(
        'E_INVALID_ARGUMENT',
        `sandbox ${this.sandboxId} has no share named ${name} (${known.length ? `its shares: ${known.join(', ')}` : 'it has no shares'}); nothing was changed`,
        { name, shares: known },
      );
    }
    const rec = this.shareList[i]!;
    const n = await detachAt(this.mountsDir, name);
    if (n > 1) this.log.warn({ share: name, mountId: rec.mountId, unmounted: n }, 'more than one mount was stacked on the share');
    await detachAt(this.sharedDir, name);
    removeMountPoint(this.mountsDir, name, this.log);
    this.shareList.splice(i, 1);
  }

  async unshareRootfs(containerId: string): Promise<void> {
    await this.unshare(`${checkContainerId(containerId)}/rootfs`);
  }

  /** Unshare everything of one container (rootfs and volumes), newest first. */
  async unshareContainer(containerId: string): Promise<void> {
    const cid = checkContainerId(containerId);
    for (const s of [...this.shareList].reverse()) if (s.containerId === cid) await this.unshare(s);
  }

  /** Unmount everything and remove the sandbox's directories. Idempotent. */
  async teardown(): Promise<void> {
    await SharedDir.teardownAt(this.sandboxDir, this.log);
    this.shareList.length = 0;
  }

  /**
   * Teardown from a path alone (recovery after a crash): unmount every mount at or below it
   * (lazily when busy), then remove the directories. Refuses to delete anything that is not an
   * empty directory or empty mount-point file, so data behind a mount that did not go is never touched.
   */
  static async teardownAt(sandboxDir: string, log: Logger): Promise<void> {
    await unmountAllUnder(sandboxDir, log);
    if (mountsUnder(sandboxDir).length > 0) {
      throw new KataError('E_MOUNT', `mounts remain under ${sandboxDir}; not removing it`, { path: sandboxDir });
    }
    const left: string[] = [];
    removeTreeSafely(sandboxDir, left);
    if (left.length > 0) {
      throw new KataError(
        'E_MOUNT',
        `${sandboxDir} not fully removed: ${left.slice(0, 5).join(', ')} are not empty mount points (left in place)`,
        { path: sandboxDir, left },
      );
    }
  }
}
