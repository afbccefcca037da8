import type { ErrorObject } from 'ajv';
import schema from './config-schema.json' with { type: 'json' };
import { validate } from './config-validator.js';
import { parseCniArgs, type ArgOverrides } from './cni-args.js';
import { CNI_CODES, CniError } from './errors.js';
import { normalizeResult, type CniResult } from './result.js';
import type { CniCommand } from './skel.js';
import { requireSupportedVersion, requireVersionForCommand, type CniVersion } from './version.js';

export type TapModel = 'tcfilter' | 'macvtap';
export type ResultConvention = 'kata-cni' | 'tc-redirect-tap';

/** The effective kata-cni configuration of one call: plugin config, then CNI_ARGS, then args.cni. */
export interface KataCniConfig {
  cniVersion: CniVersion;
  /** Network name. */
  name: string;
  model: TapModel;
  /** Tap name template ({index}, {ifname}). */
  tapName: string;
  queues: number;
  owner?: number;
  group?: number;
  vhostNet: boolean;
  /** What ADD adds to the result: the tap, or also tc-redirect-tap's pseudo VM interface. */
  resultConvention: ResultConvention;
  stateDir: string;
  logFile?: string;
  logLevel?: string;
  prevResult?: CniResult;
  /** GC: the attachments still in use (cni.dev/valid-attachments, or the older cni.dev/attachments). */
  validAttachments?: { containerID: string; ifname: string }[];
  /** DEL: CNI_ARGS problems that were skipped rather than failing the call (logged). */
  ignoredArgs?: string[];
}

export const DEFAULTS = {
  model: 'tcfilter' as TapModel,
  tapName: 'tap{index}_kata',
  queues: 1,
  vhostNet: true,
  resultConvention: 'kata-cni' as ResultConvention,
  stateDir: '/run/kata-cni',
};

export const TAP_NAME_PATTERN = new RegExp(schema.definitions.tapName.pattern);

/** "/a/b/0/c" -> "a.b[0].c" */
function fieldName(instancePath: string, extra?: string): string {
  const parts = instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^[0-9]+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out || '(root)';
}

/** One ajv error as a sentence naming the field and what was wrong, and the CNI code it deserves. */
function describeSchemaError(e: ErrorObject, data: unknown): { code: number; msg: string } {
  const value = valueAt(data, e.instancePath);
  if (e.keyword === 'required') {
    const missing = String((e.params as { missingProperty?: string }).missingProperty);
    return { code: CNI_CODES.INVALID_CONFIG, msg: `field "${fieldName(e.instancePath, missing)}" is required` };
  }
  const field = fieldName(e.instancePath);
  if (e.keyword === 'enum') {
    const allowed = (e.params as { allowedValues?: unknown[] }).allowedValues ?? [];
    return {
      code: CNI_CODES.UNSUPPORTED_FIELD,
      msg: `unsupported value ${JSON.stringify(value)} for field "${field}" (supported: ${allowed.join(', ')})`,
    };
  }
  return { code: CNI_CODES.INVALID_CONFIG, msg: `field "${field}" ${e.message ?? 'is invalid'} (got ${JSON.stringify(value)})` };
}

function valueAt(data: unknown, path: string): unknown {
  let cur: unknown = data;
  for (const p of path.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur;
}

/** Decode stdin as a JSON object (code 6 otherwise). */
export function decodeConfig(stdin: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(CNI_CODES.DECODE_FAILURE, `cannot decode the network configuration on stdin: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(
      CNI_CODES.DECODE_FAILURE,
      `the network configuration on stdin must be a JSON object (got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw})`,
    );
  }
  return raw as Record<string, unknown>;
}

/**
 * Validate a decoded request config against the schema and build the effective configuration.
 * DEL must not fail on a damaged prevResult (spec: best effort): for DEL a prevResult that fails the
 * schema is dropped instead.
 */
export function buildConfig(raw: Record<string, unknown>, command: CniCommand, cniArgs: string): KataCniConfig {
  const cniVersion = requireSupportedVersion(raw.cniVersion);
  requireVersionForCommand(command, cniVersion);
  let data = raw;
  if (!validate(data)) {
    let errors = validate.errors ?? [];
    if (command === 'DEL' && errors.every((e) => e.instancePath.startsWith('/prevResult'))) {
      data = { ...raw };
      delete data.prevResult;
      errors = validate(data) ? [] : (validate.errors ?? []);
    }
    if (errors.length > 0) {
      const described = errors.map((e) => describeSchemaError(e, data));
      const first = described[0]!;
      throw new CniError(first.code, `invalid kata-cni configuration: ${first.msg}`, described.map((d) => d.msg).join('\n'));
    }
  }
  const c = data as {
    name: string;
    model?: TapModel;
    tapName?: string;
    queues?: number;
    owner?: number;
    group?: number;
    vhostNet?: boolean;
    resultConvention?: ResultConvention;
    stateDir?: string;
    logFile?: string;
    logLevel?: string;
    prevResult?: Record<string, unknown>;
    args?: { cni?: ArgOverrides };
    'cni.dev/valid-attachments'?: { containerID: string; ifname: string }[] | null;
    'cni.dev/attachments'?: { containerID: string; ifname: string }[] | null;
  };
  const cfg: KataCniConfig = {
    cniVersion,
    name: c.name,
    model: c.model ?? DEFAULTS.model,
    tapName: c.tapName ?? DEFAULTS.tapName,
    queues: c.queues ?? DEFAULTS.queues,
    vhostNet: c.vhostNet ?? DEFAULTS.vhostNet,
    resultConvention: c.resultConvention ?? DEFAULTS.resultConvention,
    stateDir: c.stateDir ?? DEFAULTS.stateDir,
  };
  if (c.owner !== undefined) cfg.owner = c.owner;
  if (c.group !== undefined) cfg.group = c.group;
  if (c.logFile !== undefined) cfg.logFile = c.logFile;
  if (c.logLevel !== undefined) cfg.logLevel = c.logLevel;
  if (c.prevResult !== undefined) cfg.prevResult = normalizeResult(c.prevResult);
  // Key present with null: none valid (a Go nil slice from libcni); key absent: not a GC list at all.
  const key =
    'cni.dev/valid-attachments' in c ? 'cni.dev/valid-attachments' : 'cni.dev/attachments' in c ? 'cni.dev/attachments' : undefined;
  if (key !== undefined) cfg.validAttachments = c[key] ?? [];
  const ignored: string[] = [];
  applyOverrides(cfg, parseCniArgs(cniArgs, TAP_NAME_PATTERN, command === 'DEL' ? (e) => ignored.push(e.message) : undefined));
  if (ignored.length > 0) cfg.ignoredArgs = ignored;
  if (c.args?.cni) applyOverrides(cfg, c.args.cni);
  return cfg;
}

function applyOverrides(cfg: KataCniConfig, o: ArgOverrides): void {
  if (o.tapName !== undefined) cfg.tapName = o.tapName;
  if (o.queues !== undefined) cfg.queues = o.queues;
  if (o.owner !== undefined) cfg.owner = o.owner;
  if (o.group !== undefined) cfg.group = o.group;
}

/** Decode and validate in one step. */
export function parseConfig(stdin: string, command: CniCommand, cniArgs: string): KataCniConfig {
  return buildConfig(decodeConfig(stdin), command, cniArgs);
}
