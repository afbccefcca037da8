import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants as fsc,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { KataError } from '../host/errors.js';
import type { Logger } from '../host/log.js';
import { bindMount, isMountPoint, mountsUnder, unmount, unmountAllUnder } from '../host/mounts.js';
import { validateId } from '../host/names.js';
import { UndoStack } from '../host/undo.js';
import { GUEST_SHARE_DIR } from './config.js';

/**
 * The host side of a sandbox's virtio-fs share, laid out like Kata's:
 *
 *   <root>/sandboxes/<sid>            a private bind of itself (nothing here propagates to the host)
 *   <root>/sandboxes/<sid>/mounts     read-write; a shared mount of its own: binds are made here
 *   <root>/sandboxes/<sid>/shared     read-only bind of mounts, slave: sees every bind made in
 *                                     mounts, and is what virtiofsd exports
 *   <root>/sandboxes/<sid>/private    scratch for read-only volume binds
 *
 * A read-only volume is bound read-only into private/ first and that read-only mount is bound into
 * mounts/ (a bind copies the read-only flag, and so does the propagation into shared/), then the
 * private mount is dropped: a read-only remount made in mounts/ would not reach the copy already
 * propagated to shared/ (CVE-2020-28914).
 *
 * Sources are opened first and bound through /proc/self/fd, after checking where the open file
 * really is: a symlink swapped in between the check and the mount cannot redirect the bind.
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
}

function sandboxDirOf(root: string, sandboxId: string): string {
  return join(root, 'sandboxes', sandboxId);
}

function unsafe(message: string, details: Record<string, unknown>): KataError {
  return new KataError('E_PATH_UNSAFE', message, details);
}

function inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Container ids become path components: "/" and ".." are refused as unsafe, the rest as invalid names. */
function checkContainerId(cid: unknown): string {
  if (typeof cid === 'string' && (cid.includes('/') || cid.includes('..') || cid.includes('\0'))) {
    throw unsafe(`container id ${JSON.stringify(cid)} would leave the sandbox's mounts directory ("/" or ".." in it)`, {
      containerId: cid,
    });
  }
  return validateId(cid, 'container id');
}

/** A share name is a relative path that stays in mounts/: no absolute path, no "." or ".." component. */
function checkShareName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.startsWith('/') || name.includes('\0')) {
    throw unsafe(`share destination ${JSON.stringify(name)} must be a relative path inside mounts/`, { name });
  }
  const parts = name.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw unsafe(`share destination ${JSON.stringify(name)} leaves mounts/ or is not normalised (empty, "." or ".." component)`, { name });
  }
  return name;
}

function safeBase(dest: string | undefined): string {
  const b = basename(dest ?? '').replace(/[^A-Za-z0-9_.-]/g, '_');
  return b === '' || b === '.' || b === '..' ? 'volume' : b.slice(0, 64);
}

/** Remove a tree that should only hold empty directories and empty mount-point files; returns what it left. */
function removeTreeSafely(path: string, left: string[]): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (st.isDirectory()) {
    for (const e of readdirSync(path)) removeTreeSafely(join(path, e), left);
    try {
      rmdirSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(path);
    }
  } else if ((st.isFile() && st.size === 0) || st.isSymbolicLink() || st.isSocket()) {
    unlinkSync(path);
  } else {
    left.push(path);
  }
}

export class SharedDir {
  private readonly shareList: ShareRecord[] = [];

  private constructor(
    readonly root: string,
    readonly sandboxId: string,
    private readonly log: Logger,
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
      mkdirSync(sd.sandboxDir, { recursive: true, mode: 0o711 });
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
  async shareRootfs(containerId: string, rootfs: string, opts: { allowedRoots?: string[] } = {}): Promise<ShareRecord> {
    const cid = checkContainerId(containerId);
    return this.share({
      kind: 'rootfs',
      containerId: cid,
      name: `${cid}/rootfs`,
      source: rootfs,
      readonly: false,
      allowedRoots: opts.allowedRoots ?? [],
    });
  }

  /** Bind a volume into mounts/ (read-only ones through private/, see the class comment). */
  async shareVolume(req: VolumeShareRequest, defaultRoots: string[] = []): Promise<ShareRecord> {
    const cid = checkContainerId(req.containerId);
    const name =
      req.name !== undefined
        ? checkShareName(req.name)
        : `${cid}-${randomBytes(8).toString('hex')}-${safeBase(req.destination ?? req.source)}`;
    return this.share({
      kind: 'volume',
      containerId: cid,
      name,
      source: req.source,
      readonly: req.readonly,
      allowedRoots: req.allowedRoots ?? defaultRoots,
    });
  }

  private async share(r: {
    kind: ShareRecord['kind'];
    containerId: string;
    name: string;
    source: string;
    readonly: boolean;
    allowedRoots: string[];
  }): Promise<ShareRecord> {
    checkShareName(r.name);
    if (this.shareList.some((s) => s.name === r.name)) {
      throw new KataError('E_INVALID_ARGUMENT', `${r.name} is already shared in sandbox ${this.sandboxId}`, { name: r.name });
    }
    let fd: number;
    try {
      // Refuse devices and fifos before opening anything (opening a device can have effects).
      const pre = statSync(r.source);
      if (!pre.isDirectory() && !pre.isFile()) {
        throw new KataError('E_INVALID_ARGUMENT', `share source ${r.source} is neither a directory nor a regular file`, {
          source: r.source,
        });
      }
      fd = openSync(r.source, fsc.O_RDONLY | fsc.O_NONBLOCK);
    } catch (e) {
      if (e instanceof KataError) throw e;
      throw new KataError('E_INVALID_ARGUMENT', `share source ${r.source}: ${(e as Error).message}`, { source: r.source }, { cause: e });
    }
    try {
      const real = readlinkSync(`/proc/self/fd/${fd}`);
      const st = fstatSync(fd);
      if (!st.isDirectory() && !st.isFile()) {
        throw new KataError('E_INVALID_ARGUMENT', `share source ${r.source} is neither a directory nor a regular file`, {
          source: r.source,
        });
      }
      if (r.allowedRoots.length > 0) {
        const roots = r.allowedRoots.map((p) => {
          try {
            return realpathSync(p);
          } catch {
            return p;
          }
        });
        if (!roots.some((root) => inside(real, root))) {
          throw unsafe(`share source ${r.source} resolves to ${real}, outside the allowed directories ${roots.join(', ')}`, {
            source: r.source,
            resolved: real,
            allowedRoots: roots,
          });
        }
      }
      const fdPath = `/proc/${process.pid}/fd/${fd}`;
      const target = this.makeMountPoint(r.name, st.isDirectory());
      const undo = new UndoStack(this.log);
      await undo.guard(async () => {
        undo.push('remove mount point', async () => this.removeMountPoint(r.name));
        if (!r.readonly) {
          await bindMount(fdPath, target);
          undo.push('unmount share', async () => void (await unmount(target, this.log)));
        } else {
          const priv = join(this.privateDir, `${randomBytes(6).toString('hex')}-${basename(r.name)}`);
          if (st.isDirectory()) mkdirSync(priv, { mode: 0o700 });
          else writeFileSync(priv, '', { mode: 0o600, flag: 'wx' });
          try {
            await bindMount(fdPath, priv, { readonly: true });
            try {
              await bindMount(priv, target);
              undo.push('unmount share', async () => void (await unmount(target, this.log)));
            } finally {
              await unmount(priv, this.log);
            }
          } finally {
            if (!isMountPoint(priv)) removeTreeSafely(priv, []);
          }
        }
      });
      const rec: ShareRecord = {
        kind: r.kind,
        containerId: r.containerId,
        name: r.name,
        hostPath: target,
        guestPath: `${GUEST_SHARE_DIR}${r.name}`,
        source: real,
        readonly: r.readonly,
      };
      this.shareList.push(rec);
      this.log.debug({ share: rec }, 'shared into virtio-fs');
      return { ...rec };
    } finally {
      closeSync(fd);
    }
  }

  /** Create mounts/<name> (directory or empty file) after checking it stays inside mounts/. */
  private makeMountPoint(name: string, dir: boolean): string {
    const mounts = realpathSync(this.mountsDir);
    const target = join(mounts, name);
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    const parent = realpathSync(dirname(target));
    if (!inside(parent, mounts)) {
      throw unsafe(`share destination ${name} resolves to ${parent}, outside ${mounts}`, { name, resolved: parent });
    }
    let existing;
    try {
      existing = lstatSync(target);
    } catch {
      /* absent: the normal case */
    }
    if (existing) {
      if (existing.isSymbolicLink()) throw unsafe(`share destination ${target} is a symlink`, { name });
      throw new KataError('E_INVALID_ARGUMENT', `share destination ${target} already exists`, { name });
    }
    if (dir) mkdirSync(target, { mode: 0o755 });
    else writeFileSync(target, '', { mode: 0o644, flag: 'wx' });
    return join(parent, basename(target));
  }

  private removeMountPoint(name: string): void {
    const target = join(this.mountsDir, name);
    const left: string[] = [];
    if (!isMountPoint(target)) removeTreeSafely(target, left);
    // Remove now-empty parents up to mounts/ (e.g. <cid>/ of a rootfs).
    for (let d = dirname(target); d !== this.mountsDir && inside(d, this.mountsDir); d = dirname(d)) {
      try {
        rmdirSync(d);
      } catch {
        break;
      }
    }
    if (left.length) this.log.warn({ left }, 'share mount point not removed (not empty)');
  }

  /** Exact inverse of a share: unmount it (its copy in shared/ goes with it) and remove the mount point. */
  async unshare(nameOrRecord: string | ShareRecord): Promise<void> {
    const name = typeof nameOrRecord === 'string' ? nameOrRecord : nameOrRecord.name;
    checkShareName(name);
    const target = join(this.mountsDir, name);
    await unmountAllUnder(target, this.log);
    await unmountAllUnder(join(this.sharedDir, name), this.log);
    this.removeMountPoint(name);
    const i = this.shareList.findIndex((s) => s.name === name);
    if (i >= 0) this.shareList.splice(i, 1);
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
