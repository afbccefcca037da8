import { closeSync, constants as fsc, existsSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseToml, TomlError } from 'smol-toml';
import { KataError } from '../../host/errors.js';
import { resolveExecutable } from '../../host/daemon.js';
import type { Logger } from '../../host/log.js';
import { silentLogger } from '../../host/log.js';
import { defaultConfig, DEFAULT_CONFIG_PATHS, hostCores, hostMemoryMiB } from './defaults.js';
import { checkRules, type ConfigProblem } from './rules.js';
import { CONFIG_SCHEMA, type RawConfig, type SchemaNode } from './schema.js';
import type { SandboxConfig } from './types.js';
import { findUnknownKeys } from './unknown-keys.js';

/**
 * Reading the configuration file: TOML (smol-toml) -> JSON Schema check (ajv: types, enums,
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
}

/** Hypervisor tables of Kata that have no driver here: naming one is an error, not a typo. */
const OTHER_HYPERVISORS = ['clh', 'cloud-hypervisor', 'firecracker', 'fc', 'dragonball', 'stratovirt', 'remote', 'acrn'];

let validator: ReturnType<Ajv['compile']> | undefined;
function validate(raw: unknown): ErrorObject[] {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, strict: true });
    validator = ajv.compile(CONFIG_SCHEMA);
  }
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
    case 'enum':
      expected = `one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
      break;
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

function configError(file: string, problems: ConfigProblem[]): KataError {
  const lines = problems.map((p) => `${p.key} ${p.message}`);
  return new KataError('E_CONFIG', `${file}: ${lines.join('; ')}`, { file, keys: problems.map((p) => p.key), problems });
}

/**
 * Parse and validate configuration text. `file` names it in messages and anchors relative paths
 * (resolved against the file's directory).
 */
export function parseConfig(text: string, file: string, opts: ConfigOptions = {}): SandboxConfig {
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

  for (const u of findUnknownKeys(raw, CONFIG_SCHEMA as unknown as SchemaNode)) {
    if (u.key.startsWith('hypervisor.') && OTHER_HYPERVISORS.includes(u.key.split('.')[1]!)) continue;
    if (u.kata) log.warn({ file, key: u.key }, `${file}: ${u.key} is a Kata setting this runtime does not use; ignored`);
    else log.warn({ file, key: u.key }, `${file}: unknown key ${u.key}; ignored (a typo?)`);
  }
  if (r.factory !== undefined) {
    log.warn({ file, key: 'factory' }, `${file}: [factory] (VM templating and caching) is not supported; the section is ignored`);
  }

  const cfg = fromRaw(r, file);
  if (opts.checkFiles !== false) problems.push(...checkFiles(r, cfg));
  problems.push(...checkRules(cfg));
  if (problems.length > 0) throw configError(file, problems);
  return cfg;
}

function fromRaw(r: RawConfig, file: string): SandboxConfig {
  const cfg = defaultConfig();
  cfg.source = file;
  const base = dirname(resolve(file));
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(base, p));
  const q = r.hypervisor?.qemu ?? {};
  const h = cfg.hypervisor;
  // A QEMU given by bare name is looked up in PATH at start; a relative path is anchored at the file.
  if (q.path !== undefined) h.path = q.path.includes('/') ? abs(q.path)! : q.path;
  h.kernel = abs(q.kernel);
  h.initrd = abs(q.initrd);
  h.image = abs(q.image);
  if (q.machine_type !== undefined) h.machineType = q.machine_type;
  if (q.kernel_params !== undefined) h.kernelParams = q.kernel_params.split(/\s+/).filter((s) => s !== '');
  // Kata: 0 (or unset) = the default.
  if (q.default_vcpus !== undefined && q.default_vcpus > 0) h.vcpus = q.default_vcpus;
  if (q.default_maxvcpus !== undefined) h.maxVcpus = q.default_maxvcpus > 0 ? q.default_maxvcpus : hostCores();
  if (q.default_memory !== undefined) h.memoryMiB = q.default_memory;
  if (q.default_maxmemory !== undefined) h.maxMemoryMiB = q.default_maxmemory > 0 ? q.default_maxmemory : hostMemoryMiB();
  if (q.memory_slots !== undefined) h.memorySlots = q.memory_slots;
  if (q.shared_fs !== undefined) h.sharedFs = q.shared_fs;
  if (q.virtio_fs_daemon !== undefined) h.virtioFsDaemon = abs(q.virtio_fs_daemon)!;
  if (q.virtio_fs_cache !== undefined) h.virtioFsCache = q.virtio_fs_cache;
  if (q.virtio_fs_cache_size !== undefined) h.virtioFsCacheSizeMiB = q.virtio_fs_cache_size;
  if (q.virtio_fs_queue_size !== undefined) h.virtioFsQueueSize = q.virtio_fs_queue_size;
  if (q.virtio_fs_extra_args !== undefined) h.virtioFsExtraArgs = [...q.virtio_fs_extra_args];
  if (q.disable_image_nvdimm !== undefined) h.disableImageNvdimm = q.disable_image_nvdimm;
  if (q.block_device_driver !== undefined) h.blockDeviceDriver = q.block_device_driver;
  if (q.disable_block_device_use !== undefined) h.disableBlockDeviceUse = q.disable_block_device_use;
  if (q.block_device_cache_set !== undefined) h.blockCache.set = q.block_device_cache_set;
  if (q.block_device_cache_direct !== undefined) h.blockCache.direct = q.block_device_cache_direct;
  if (q.block_device_cache_noflush !== undefined) h.blockCache.noFlush = q.block_device_cache_noflush;
  if (q.block_device_aio !== undefined) h.blockCache.aio = q.block_device_aio;
  if (q.block_device_nbd_reconnect_delay !== undefined) h.nbdReconnectDelaySec = q.block_device_nbd_reconnect_delay;
  if (q.block_device_nbd_open_timeout !== undefined) h.nbdOpenTimeoutSec = q.block_device_nbd_open_timeout;
  if (q.pcie_root_port !== undefined) h.pcieRootPorts = q.pcie_root_port;
  if (q.hotplug_vfio_on_root_bus !== undefined) h.hotplugVfioOnRootBus = q.hotplug_vfio_on_root_bus;
  if (q.disable_vhost_net !== undefined) h.disableVhostNet = q.disable_vhost_net;
  if (q.network_queues !== undefined) h.networkQueues = q.network_queues;
  if (q.enable_debug !== undefined) h.enableDebug = q.enable_debug;
  if (q.accel !== undefined) h.accel = q.accel;
  if (q.seccompsandbox !== undefined) h.seccompSandbox = q.seccompsandbox;

  const a = r.agent?.kata ?? {};
  if (a.dial_timeout !== undefined) cfg.agent.dialTimeoutMs = a.dial_timeout * 1000;
  if (a.enable_debug !== undefined) cfg.agent.enableDebug = a.enable_debug;

  const rt = r.runtime ?? {};
  if (rt.internetworking_model !== undefined) cfg.runtime.internetworkingModel = rt.internetworking_model;
  if (rt.disable_new_netns !== undefined) cfg.runtime.disableNewNetns = rt.disable_new_netns;
  if (rt.sandbox_cgroup_only !== undefined) cfg.runtime.sandboxCgroupOnly = rt.sandbox_cgroup_only;
  if (rt.enable_debug !== undefined) cfg.runtime.enableDebug = rt.enable_debug;
  if (rt.state_dir !== undefined) cfg.runtime.stateDir = rt.state_dir;
  if (rt.volume_roots !== undefined) cfg.runtime.volumeRoots = [...rt.volume_roots];
  if (rt.rw_share_reachable !== undefined) cfg.runtime.rwShareReachable = rt.rw_share_reachable;
  return cfg;
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
  if (q.path !== undefined) executable('path', h.path);
  if (q.virtio_fs_daemon !== undefined && h.sharedFs === 'virtio-fs') executable('virtio_fs_daemon', h.virtioFsDaemon);
  return out;
}

/** Which file loadConfig reads when none is named: KATA_RESOURCES_CONFIG, else the first default path that exists. */
function resolveConfigPath(file?: string): string | undefined {
  if (file !== undefined) return file;
  const env = process.env.KATA_RESOURCES_CONFIG;
  if (env) return env;
  return DEFAULT_CONFIG_PATHS.find((p) => existsSync(p));
}

/**
 * Load the configuration: the named file (must exist), else the default location if present, else
 * the built-in defaults (which work on the embedded guest kit).
 */
export function loadConfig(file?: string, opts: ConfigOptions = {}): SandboxConfig {
  const path = resolveConfigPath(file);
  if (path === undefined) {
    const cfg = defaultConfig();
    const problems = checkRules(cfg);
    if (problems.length > 0) throw configError('(built-in defaults)', problems);
    return cfg;
  }
  return parseConfig(readConfigFile(path), path, opts);
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
