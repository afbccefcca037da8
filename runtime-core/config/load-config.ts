import { closeSync, constants as fsc, existsSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import { parse as parseToml, TomlError } from 'smol-toml';
import { KataError } from '../../host/errors.js';
import { resolveExecutable } from '../../host/daemon.js';
import type { Logger } from '../../host/log.js';
import { silentLogger } from '../../host/log.js';
import { defaultConfig, DEFAULT_CONFIG_PATHS } from './defaults.js';
import { validate as schemaCheck } from './generated/config-validator.js';
import { applyRaw, type Origin } from './keys.js';
import { checkRules, type ConfigProblem } from './rules.js';
import { CONFIG_SCHEMA, REFUSED_VALUES, type RawConfig, type SchemaNode } from './schema.js';
import type { SandboxConfig } from './types.js';
import { findIgnoredKeys, type IgnoredKey } from './unknown-keys.js';

/**
 * Reading the configuration file: TOML (smol-toml) -> JSON Schema check (ajv, generated ahead of time: types, enums,
 * ranges) -> unknown keys warned -> defaults applied -> file paths checked -> rules across keys and
 * hypervisor capabilities. Every failure is E_CONFIG naming the file, the key (dotted path as in the
 * file, e.g. hypervisor.qemu.default_memory) and what was expected; all problems of a file are
 * reported at once.
 */

export interface ConfigOptions {
  log?: Logger;
  /**
   * Check that files named by the configuration exist (kernel, initrd, image, QEMU, virtiofsd).
   * Default true; tests of pure parsing turn it off.
   */
  checkFiles?: boolean;
  /**
   * Log what the file sets that has no effect here (one line) and the values changed the way Kata
   * changes them. Default true; the supervisor, which loads the file the CLI already reported on,
   * turns it off.
   */
  report?: boolean;
}

/** What loading a file found besides the configuration itself (`kata-resources env` prints it). */
export interface ConfigReport {
  config: SandboxConfig;
  /** The file read; undefined = built-in defaults only. */
  file: string | undefined;
  /** How the file was chosen: --config, an environment variable, a default path, or none. */
  chosenBy: 'option' | 'KATA_RESOURCES_CONFIG' | 'KATA_CONF_FILE' | 'default path' | 'built-in defaults';
  /** Where each applied key's value came from. */
  origins: Record<string, Origin>;
  ignored: IgnoredKey[];
  /** Values changed as Kata changes them (clamped, rounded up, zero = default). */
  notes: ConfigProblem[];
}

/** Hypervisor tables of Kata that have no driver here: naming one is an error, not a typo. */
const OTHER_HYPERVISORS = ['clh', 'cloud-hypervisor', 'firecracker', 'fc', 'dragonball', 'stratovirt', 'remote', 'acrn'];

/** The schema check, generated ahead of time from CONFIG_SCHEMA (validator-source.ts says why). */
const validator = schemaCheck as unknown as { (raw: unknown): boolean; errors?: ErrorObject[] | null };
function validate(raw: unknown): ErrorObject[] {
  return validator(raw) ? [] : [...(validator.errors ?? [])];
}

/** "/hypervisor/qemu/virtio_fs_extra_args/1" -> "hypervisor.qemu.virtio_fs_extra_args[1]". */
function keyPath(instancePath: string): string {
  let out = '';
  for (const part of instancePath.split('/').slice(1)) {
    const p = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  }
  return out;
}

const TYPE_NAMES: Record<string, string> = {
  object: 'a table',
  integer: 'an integer',
  string: 'a string',
  boolean: 'a boolean (true/false)',
  array: 'an array',
  number: 'a number',
};

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v !== null && typeof v === 'object') return 'a table';
  const s = JSON.stringify(v) ?? String(v);
  const shown = s.length > 40 ? `${s.slice(0, 40)}...` : s;
  if (typeof v === 'number') return Number.isInteger(v) ? `the integer ${shown}` : `the number ${shown}`;
  return `${typeof v} ${shown}`;
}

function schemaAt(instancePath: string): SchemaNode | undefined {
  let node: SchemaNode | undefined = CONFIG_SCHEMA as unknown as SchemaNode;
  for (const part of instancePath.split('/').slice(1)) {
    if (!node) return undefined;
    node = /^\d+$/.test(part) ? node.items : node.properties?.[part];
  }
  return node;
}

/** One ajv error as a problem: the key, what was expected, what was found. */
function problemOf(e: ErrorObject, raw: unknown): ConfigProblem & { expected: string } {
  const key = keyPath(e.instancePath) || '(top level)';
  const got = describe(e.data ?? valueAt(raw, e.instancePath));
  const node = schemaAt(e.instancePath);
  let expected: string;
  switch (e.keyword) {
    case 'type': {
      const t = String((e.params as { type: string }).type);
      expected = TYPE_NAMES[t] ?? t;
      if (t === 'array' && node?.items?.type) expected = `an array of ${node.items.type}s`;
      break;
    }
    case 'enum': {
      expected = `one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
      const refused = REFUSED_VALUES[key];
      const why = refused?.[String(valueAt(raw, e.instancePath))] ?? refused?.['*'];
      if (why) return { key, expected, message: `must be ${expected} (got ${got}: ${why})` };
      break;
    }
    case 'minimum':
    case 'maximum': {
      const lo = node?.minimum;
      const hi = node?.maximum;
      expected =
        lo !== undefined && hi !== undefined
          ? `an integer from ${lo} to ${hi}`
          : `${e.keyword === 'minimum' ? '>=' : '<='} ${(e.params as { limit: number }).limit}`;
      break;
    }
    case 'minLength':
      expected = 'a non-empty string';
      break;
    case 'pattern':
      expected = 'an absolute path (starting with "/")';
      break;
    default:
      expected = e.message ?? e.keyword;
  }
  return { key, expected, message: `must be ${expected} (got ${got})` };
}

function valueAt(raw: unknown, instancePath: string): unknown {
  let v: unknown = raw;
  for (const part of instancePath.split('/').slice(1)) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** E_CONFIG listing every problem of a file (details.problems keeps them one by one). */
export function configError(file: string, problems: ConfigProblem[]): KataError {
  const lines = problems.map((p) => `${p.key} ${p.message}`);
  return new KataError('E_CONFIG', `${file}: ${lines.join('; ')}`, { file, keys: problems.map((p) => p.key), problems });
}

/**
 * Parse and validate configuration text. `file` names it in messages and anchors relative paths
 * (resolved against the file's directory).
 */
export function parseConfig(text: string, file: string, opts: ConfigOptions = {}): SandboxConfig {
  return parseConfigReport(text, file, opts).config;
}

/** parseConfig, with what the file set that has no effect, and where each value came from. */
export function parseConfigReport(text: string, file: string, opts: ConfigOptions = {}): Omit<ConfigReport, 'chosenBy'> {
  const log = opts.log ?? silentLogger();
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0] ?? 'syntax error';
      throw new KataError(
        'E_CONFIG',
        `${file}:${e.line}:${e.column}: TOML syntax error: ${first}`,
        { file, line: e.line, column: e.column },
        { cause: e },
      );
    }
    throw new KataError('E_CONFIG', `${file}: cannot parse: ${(e as Error).message}`, { file }, { cause: e });
  }

  const problems: ConfigProblem[] = validate(raw).map((e) => problemOf(e, raw));
  const r = raw as RawConfig;
  const hv = r.hypervisor !== null && typeof r.hypervisor === 'object' ? r.hypervisor : undefined;
  for (const name of Object.keys(hv ?? {})) {
    if (OTHER_HYPERVISORS.includes(name)) {
      problems.push({ key: `hypervisor.${name}`, message: `names a hypervisor this runtime has no driver for; use [hypervisor.qemu]` });
    }
  }
  if (problems.length > 0) throw configError(file, problems);

  const ignored = findIgnoredKeys(raw, CONFIG_SCHEMA as unknown as SchemaNode).filter(
    (u) => !(u.key.startsWith('hypervisor.') && OTHER_HYPERVISORS.includes(u.key.split('.')[1]!)),
  );
  const cfg = defaultConfig();
  cfg.source = file;
  const notes: ConfigProblem[] = [];
  const set = applyRaw(cfg, raw, { base: dirname(resolve(file)), note: (key, message) => notes.push({ key, message }) });
  const origins: Record<string, Origin> = {};
  for (const k of set) origins[k] = 'file';
  if (opts.checkFiles !== false) problems.push(...checkFiles(r, cfg));
  problems.push(...checkRules(cfg));
  if (problems.length > 0) throw configError(file, problems);
  if (opts.report !== false) reportIgnored(log, file, ignored, notes);
  return { config: cfg, file, origins, ignored, notes };
}

const shown = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
};

/**
 * One line for the Kata settings without effect (those whose value would matter named with the
 * reason, the rest counted), one for unknown keys, one per value changed as Kata changes it.
 */
function reportIgnored(log: Logger, file: string, ignored: IgnoredKey[], notes: ConfigProblem[]): void {
  const kata = ignored.filter((i) => i.reason !== undefined);
  if (kata.length > 0) {
    const byReason = new Map<string, string[]>();
    for (const i of kata.filter((k) => !k.changesNothing)) {
      const l = byReason.get(i.reason!) ?? [];
      l.push(`${i.key} = ${shown(i.value)}`);
      byReason.set(i.reason!, l);
    }
    const parts = [...byReason].map(([why, keys]) => `${keys.join(', ')} (${why})`);
    const quiet = kata.length - kata.filter((k) => !k.changesNothing).length;
    const tail =
      quiet === 0
        ? ''
        : parts.length > 0
          ? `; and ${quiet} more at values that change nothing here`
          : 'all at values that change nothing here';
    log.warn(
      { file, keys: kata.map((k) => k.key) },
      `${file}: ${kata.length} Kata setting(s) have no effect here: ${parts.join('; ')}${tail} (kata-resources env lists each with its reason)`,
    );
  }
  const unknown = ignored.filter((i) => i.reason === undefined);
  if (unknown.length > 0) {
    log.warn(
      { file, keys: unknown.map((u) => u.key) },
      `${file}: unknown key(s) ${unknown.map((u) => u.key).join(', ')}; ignored (neither this runtime nor Kata has them: a typo?)`,
    );
  }
  for (const n of notes) log.warn({ file, key: n.key }, `${file}: ${n.key} ${n.message}`);
}

/** Files the file names explicitly must be there (defaults are checked by whoever uses them). */
function checkFiles(r: RawConfig, cfg: SandboxConfig): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const q = r.hypervisor?.qemu ?? {};
  const h = cfg.hypervisor;
  const regular = (key: string, p: string | undefined): void => {
    if (p === undefined) return;
    let st;
    try {
      st = statSync(p);
    } catch {
      out.push({ key: `hypervisor.qemu.${key}`, message: `names ${p}, which does not exist` });
      return;
    }
    if (!st.isFile() && !st.isBlockDevice())
      out.push({ key: `hypervisor.qemu.${key}`, message: `names ${p}, which is not a regular file` });
  };
  const executable = (key: string, p: string): void => {
    if (resolveExecutable(p) === undefined)
      out.push({
        key: `hypervisor.qemu.${key}`,
        message: `names ${p}, which is not an executable file${p.includes('/') ? '' : ' in PATH'}`,
      });
  };
  regular('kernel', h.kernel);
  regular('initrd', h.initrd);
  regular('image', h.image);
  if (h.firmware !== '') regular('firmware', h.firmware);
  if (q.path !== undefined) executable('path', h.path);
  if (q.virtio_fs_daemon !== undefined && h.sharedFs === 'virtio-fs') executable('virtio_fs_daemon', h.virtioFsDaemon);
  return out;
}

/**
 * Which file loadConfig reads: the one named, else KATA_RESOURCES_CONFIG, else KATA_CONF_FILE
 * (Kata's variable), else the first default path that exists, else none (built-in defaults).
 */
function resolveConfigPath(file?: string): { path: string | undefined; chosenBy: ConfigReport['chosenBy'] } {
  if (file !== undefined) return { path: file, chosenBy: 'option' };
  if (process.env.KATA_RESOURCES_CONFIG) return { path: process.env.KATA_RESOURCES_CONFIG, chosenBy: 'KATA_RESOURCES_CONFIG' };
  if (process.env.KATA_CONF_FILE) return { path: process.env.KATA_CONF_FILE, chosenBy: 'KATA_CONF_FILE' };
  const found = DEFAULT_CONFIG_PATHS.find((p) => existsSync(p));
  return found ? { path: found, chosenBy: 'default path' } : { path: undefined, chosenBy: 'built-in defaults' };
}

/**
 * Load the configuration: the named file (must exist), else the default location if present, else
 * the built-in defaults (which work on the embedded guest kit).
 */
export function loadConfig(file?: string, opts: ConfigOptions = {}): SandboxConfig {
  return loadConfigReport(file, opts).config;
}

/** loadConfig, with the report `kata-resources env` prints. */
export function loadConfigReport(file?: string, opts: ConfigOptions = {}): ConfigReport {
  const { path, chosenBy } = resolveConfigPath(file);
  if (path === undefined) {
    const cfg = defaultConfig();
    const problems = checkRules(cfg);
    if (problems.length > 0) throw configError('(built-in defaults)', problems);
    return { config: cfg, file: undefined, chosenBy, origins: {}, ignored: [], notes: [] };
  }
  return { ...parseConfigReport(readConfigFile(path), path, opts), chosenBy };
}

/** A configuration file is a few KiB; more is not one. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/**
 * Read a configuration file without following it into something that never ends: the descriptor
 * is opened non-blocking (a FIFO does not hang the open) and must be a regular file of at most
 * MAX_CONFIG_BYTES (/dev/zero or a pipe is refused, not read).
 */
function readConfigFile(path: string): string {
  const fail = (why: string, e?: unknown): KataError =>
    new KataError(
      'E_CONFIG',
      `${path}: cannot read the configuration file: ${why}; check the --config path`,
      { file: path },
      e ? { cause: e } : undefined,
    );
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  } catch (e) {
    throw fail((e as NodeJS.ErrnoException).code ?? (e as Error).message, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile())
      throw fail(
        `it is not a regular file (${st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isDirectory() ? 'a directory' : 'a special file'})`,
      );
    if (st.size > MAX_CONFIG_BYTES) throw fail(`it is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} a configuration may have`);
    return readFileSync(fd, 'utf8');
  } catch (e) {
    if (e instanceof KataError) throw e;
    throw fail((e as NodeJS.ErrnoException).code ?? (e as Error).message, e);
  } finally {
    closeSync(fd);
  }
}
