import type { Logger } from '../host/log.js';

/**
 * kata-cni logs only when asked to: config "logFile"/"logLevel" or the environment
 * (KATA_CNI_LOG_FILE, KATA_CNI_LOG_LEVEL). Then pino writes to that file, or to stderr when only a
 * level is given; stdout is never touched (it carries the CNI result). Unconfigured, the logger is a
 * no-op object and pino is not even loaded (a CNI plugin is spawned per call: every ms counts).
 */
export interface LogSettings {
  logFile?: string;
  logLevel?: string;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/** A Logger-shaped object that discards everything. */
function noopLogger(): Logger {
  const noop = (): void => {};
  const l: Record<string, unknown> = { level: 'silent', silent: noop, isLevelEnabled: () => false, flush: noop };
  for (const lv of LEVELS) l[lv] = noop;
  l.child = () => l;
  return l as unknown as Logger;
}

export function effectiveLogSettings(cfg: LogSettings, env: NodeJS.ProcessEnv): LogSettings {
  const out: LogSettings = {};
  const file = env.KATA_CNI_LOG_FILE || cfg.logFile;
  const level = env.KATA_CNI_LOG_LEVEL || cfg.logLevel;
  if (file) out.logFile = file;
  if (level) out.logLevel = level;
  return out;
}

export async function makeLogger(settings: LogSettings, bindings: Record<string, unknown>): Promise<Logger> {
  if (!settings.logFile && !settings.logLevel) return noopLogger();
  if (settings.logLevel === 'silent') return noopLogger();
  const { pino } = await import('pino');
  const dest = settings.logFile
    ? pino.destination({ dest: settings.logFile, sync: true, mkdir: true, append: true })
    : pino.destination({ fd: 2, sync: true });
  return pino(
    {
      level: settings.logLevel ?? 'info',
      base: { pid: process.pid, plugin: 'kata-cni', ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    dest,
  );
}
