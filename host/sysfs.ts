import { readFile, writeFile, readlink, access } from 'node:fs/promises';
import { join, basename } from 'node:path';
import { KataError } from './errors.js';

/**
 * sysfs access under a configurable root (default /sys) so that tests can point code that binds
 * PCI devices or reads device attributes at a tree in a temp dir.
 */
export class Sysfs {
  constructor(readonly root = '/sys') {}

  path(...parts: string[]): string {
    return join(this.root, ...parts);
  }

  async read(...parts: string[]): Promise<string> {
    const p = this.path(...parts);
    try {
      return (await readFile(p, 'utf8')).trim();
    } catch (e) {
      throw new KataError('E_SYSFS', `cannot read ${p}: ${(e as Error).message}`, { path: p }, { cause: e });
    }
  }

  async tryRead(...parts: string[]): Promise<string | undefined> {
    try {
      return (await readFile(this.path(...parts), 'utf8')).trim();
    } catch {
      return undefined;
    }
  }

  async write(value: string, ...parts: string[]): Promise<void> {
    const p = this.path(...parts);
    try {
      await writeFile(p, value);
    } catch (e) {
      throw new KataError('E_SYSFS', `cannot write "${value}" to ${p}: ${(e as Error).message}`, { path: p }, { cause: e });
    }
  }

  /** Basename of a symlink's target (e.g. the driver a PCI device is bound to), or undefined. */
  async linkName(...parts: string[]): Promise<string | undefined> {
    try {
      return basename(await readlink(this.path(...parts)));
    } catch {
      return undefined;
    }
  }

  async exists(...parts: string[]): Promise<boolean> {
    try {
      await access(this.path(...parts));
      return true;
    } catch {
      return false;
    }
  }
}
