import { closeSync } from 'node:fs';
import { KataError } from '../host/errors.js';
import { type OpenedPath, openExact, reachableByOthers, realOrSame, resolveStrict, within } from '../host/safe-path.js';

/**
 * The checks a share source passes before it is bound into a sandbox's export, and the open
 * descriptor the bind is made from (so a path swapped after the checks cannot redirect it):
 *
 * - symlinks in the source path are refused unless the request allows them, and never followed at
 *   or below a directory a guest can write (the sandbox's read-write share sources, its own tree);
 * - the source must lie inside the sandbox's allowed roots when there are any (`volume_roots`);
 * - it must be a directory or a regular file (never a device, fifo or socket);
 * - a read-write source must not be reachable by other host users (a guest's root could leave
 *   setuid files in it for them), unless the policy allows it.
 */

/** What to do with a read-write share whose directory other host users can reach. */
export type ReachablePolicy = 'refuse' | 'allow';

export interface SourceRequest {
  source: string;
  readonly: boolean;
  allowSymlinks: boolean;
  allowedRoots: readonly string[];
  /** Directories a guest can write: symlinks at or below them are never followed. */
  guestWritable: readonly string[];
  /** The sandbox's own shared tree: no source may lie in it. */
  ownTree: string;
  reachable: ReachablePolicy;
}

/** Check a source and open it (O_PATH). The caller closes `fd`. */
export function openShareSource(r: SourceRequest): OpenedPath & { warning?: string } {
  let real: string;
  try {
    real = resolveStrict(r.source, { allowSymlinks: r.allowSymlinks, noFollowBelow: [...r.guestWritable, r.ownTree] });
  } catch (e) {
    if (e instanceof KataError && e.code === 'E_PATH_UNSAFE') {
      throw new KataError('E_PATH_UNSAFE', `share source ${e.message}`, { ...e.details, source: r.source }, { cause: e });
    }
    if (e instanceof KataError) throw new KataError(e.code, `share source ${e.message}`, { ...e.details, source: r.source }, { cause: e });
    throw e;
  }
  if (within(real, r.ownTree)) {
    throw new KataError('E_PATH_UNSAFE', `share source ${r.source} lies inside the sandbox's own shared directory ${r.ownTree}`, {
      source: r.source,
    });
  }
  if (r.allowedRoots.length > 0) {
    const roots = r.allowedRoots.map(realOrSame);
    if (!roots.some((root) => within(real, root))) {
      throw new KataError(
        'E_PATH_UNSAFE',
        `share source ${r.source} resolves to ${real}, outside the allowed directories ${roots.join(', ')} (volume_roots)`,
        { source: r.source, resolved: real, allowedRoots: roots },
      );
    }
  }
  const o = openExact(real);
  try {
    if (!o.st.isDirectory() && !o.st.isFile()) {
      throw new KataError('E_INVALID_ARGUMENT', `share source ${r.source} is neither a directory nor a regular file`, { source: r.source });
    }
    let warning: string | undefined;
    if (!r.readonly) {
      const why = reachableByOthers(real);
      if (why !== undefined && r.reachable === 'refuse') {
        throw new KataError(
          'E_PATH_UNSAFE',
          `read-write share source ${real} can be reached by other host users (${why}); the guest's root could leave setuid files there for them: move it below a directory only root can enter (e.g. chmod 0700 a parent), share it read-only, or set virtiofs.rwShareReachable = "allow"`,
          { source: r.source, resolved: real },
        );
      }
      if (why !== undefined) warning = `read-write share source ${real} can be reached by other host users (${why})`;
    }
    return warning === undefined ? o : { ...o, warning };
  } catch (e) {
    closeSync(o.fd);
    throw e;
  }
}
