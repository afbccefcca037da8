/**
 * The configuration part of `check`: the file loaded with the rules and file checks of `sandbox
 * up`, then the same preflight `up` runs (binaries, virtiofsd flavor and arguments), each problem
 * one failed item naming the key.
 */
import { isKataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import { defaultConfig } from '../config/defaults.js';
import { loadConfigReport } from '../config/load-config.js';
import type { ConfigProblem } from '../config/rules.js';
import type { SandboxConfig } from '../config/types.js';
import type { CheckItem } from '../host-check.js';
import { preflight } from '../sandbox/preflight.js';

const fail = (p: ConfigProblem): CheckItem => ({
  name: `config: ${p.key}`,
  ok: false,
  severity: 'fail',
  detail: p.message,
  fix: `change ${p.key} (sandbox up refuses this configuration)`,
});

/** The items of the configuration check, and the configuration the host checks then use. */
export async function configCheck(file: string | undefined, log: Logger): Promise<{ cfg: SandboxConfig; items: CheckItem[] }> {
  let cfg: SandboxConfig;
  let name: string;
  try {
    const r = loadConfigReport(file, { log });
    cfg = r.config;
    name = r.file ?? 'built-in defaults';
  } catch (e) {
    if (!isKataError(e) || e.code !== 'E_CONFIG') throw e;
    const problems = Array.isArray(e.details.problems) ? (e.details.problems as ConfigProblem[]) : [{ key: 'file', message: e.message }];
    return { cfg: defaultConfig(), items: problems.map(fail) };
  }
  const pf = await preflight(cfg);
  const items: CheckItem[] = [
    {
      name: 'configuration',
      ok: pf.problems.length === 0,
      severity: 'fail',
      detail: pf.problems.length === 0 ? `${name}: sandbox up would accept it` : `${name}: ${pf.problems.length} problem(s)`,
    },
    ...pf.problems.map(fail),
    ...pf.notes.map((n): CheckItem => ({ name: 'config: note', ok: true, severity: 'warn', detail: n })),
  ];
  return { cfg, items };
}
