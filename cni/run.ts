import type { Logger } from '../host/log.js';
import { toErrorResult } from './errors.js';
import { parseCommand, parseRequest } from './skel.js';
import { mark } from './timing.js';
import { CURRENT_VERSION, isSupportedVersion, SUPPORTED_VERSIONS, versionResult } from './version.js';

/**
 * One CNI call, from environment + stdin to stdout + exit status. Only what VERSION needs is
 * imported eagerly; config validation, logging and the network code are loaded per command (in the
 * bundle they are lazily initialised modules), so VERSION costs little more than Node's own start.
 */
export interface CniOutcome {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const ABOUT = `CNI kata-cni plugin (kata-resources): chained; gives the VM a tap redirected to CNI_IFNAME\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`;

export async function runCni(env: NodeJS.ProcessEnv, stdin: string): Promise<CniOutcome> {
  let version: string = CURRENT_VERSION;
  let log: Logger | undefined;
  try {
    const command = parseCommand(env);
    // As libcni's skel: no CNI_COMMAND prints what this is to stderr and succeeds.
    if (command === undefined) return { stdout: '', stderr: ABOUT, exitCode: 0 };
    if (command === 'VERSION') return ok(versionResult(stdin));
    const req = parseRequest(command, env);
    // ADD: the pod link is read (one `ip` process) while the configuration is validated; the read
    // needs only CNI_NETNS and CNI_IFNAME. If anything fails, ADD reads again and reports.
    const early = command === 'ADD' ? import('./commands/add.js').then((m) => m.startLinkRead(req)) : undefined;
    early?.catch(() => undefined);
    // The tc helper starts once ip's first request is on its way (see early-helpers.ts).
    (await import('./early-helper-holder.js')).startTcHelper();
    const { decodeConfig, buildConfig } = await import('./config.js');
    const raw = decodeConfig(stdin);
    if (isSupportedVersion(raw.cniVersion)) version = raw.cniVersion;
    const cfg = buildConfig(raw, command, req.args);
    mark('config-checked');
    const { makeLogger, effectiveLogSettings } = await import('./log.js');
    log = await makeLogger(effectiveLogSettings(cfg, env), {
      command,
      containerId: req.containerId || undefined,
      ifname: req.ifname || undefined,
      netns: req.netns || undefined,
      network: cfg.name,
    });
    if (cfg.ignoredArgs) log.warn({ problems: cfg.ignoredArgs }, 'CNI_ARGS problems ignored: DEL is best effort');
    switch (command) {
      case 'ADD': {
        const { cmdAdd } = await import('./commands/add.js');
        return ok(await cmdAdd(req, cfg, log, early));
      }
      case 'DEL': {
        const { cmdDel } = await import('./commands/del.js');
        await cmdDel(req, cfg, log);
        return ok(undefined);
      }
      case 'CHECK': {
        const { cmdCheck } = await import('./commands/check.js');
        await cmdCheck(req, cfg, log);
        return ok(undefined);
      }
      case 'GC': {
        const { cmdGc } = await import('./commands/gc.js');
        await cmdGc(cfg, log);
        return ok(undefined);
      }
      case 'STATUS': {
        const { cmdStatus } = await import('./commands/status.js');
        cmdStatus(cfg, env);
        return ok(undefined);
      }
    }
  } catch (e) {
    const r = toErrorResult(e, version);
    log?.error({ err: e, code: r.code }, r.msg);
    return { stdout: `${JSON.stringify(r)}\n`, stderr: '', exitCode: 1 };
  }
}

function ok(result: unknown): CniOutcome {
  return { stdout: result === undefined ? '' : `${JSON.stringify(result)}\n`, stderr: '', exitCode: 0 };
}
