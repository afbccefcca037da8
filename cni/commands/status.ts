import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KataCniConfig } from '../config.js';
import { CNI_CODES, CniError } from '../errors.js';

/**
 * STATUS (spec 1.1): ready to serve ADD? Needs the tun device node (to create taps) and iproute2's
 * `ip` and `tc` on PATH, and a state directory it can create or write. Not ready is code 50
 * ("plugin not available", spec text after the v1.1.0 tag) listing every reason. No process is
 * spawned: this runs on every kubelet status poll.
 */
function statusProblems(cfg: Pick<KataCniConfig, 'stateDir'>, env: NodeJS.ProcessEnv, tunPath = '/dev/net/tun'): string[] {
  const problems: string[] = [];
  try {
    if (!statSync(tunPath).isCharacterDevice()) problems.push(`${tunPath} is not a character device`);
  } catch {
    problems.push(`${tunPath} is missing (load the tun module: modprobe tun)`);
  }
  const path = (env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter(Boolean);
  for (const tool of ['ip', 'tc']) {
    if (!path.some((d) => executable(join(d, tool)))) problems.push(`${tool} is not on PATH (install iproute2)`);
  }
  let dir = cfg.stateDir;
  for (;;) {
    try {
      accessSync(dir, constants.W_OK | constants.X_OK);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || dir === '/') {
        problems.push(`state directory ${cfg.stateDir} cannot be created or written (${(e as Error).message})`);
        break;
      }
      dir = dir.replace(/\/[^/]*\/?$/, '') || '/';
    }
  }
  return problems;
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export function cmdStatus(cfg: KataCniConfig, env: NodeJS.ProcessEnv): void {
  const problems = statusProblems(cfg, env);
  if (problems.length > 0)
    throw new CniError(CNI_CODES.NOT_AVAILABLE, `kata-cni is not ready: ${problems.join('; ')}`, problems.join('\n'));
}
