import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../../host/exec.js';
import type { NetnsRef } from '../../../host/netns.js';

/**
 * A minimal CNI runtime for tests, doing what libcni does (libcni/api.go): every plugin is a
 * process found on CNI_PATH, given CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS,
 * CNI_PATH and the request configuration (plugin object + cniVersion + name [+ prevResult]) on
 * stdin. ADD runs the list in order feeding each result to the next as prevResult and "caches" the
 * final result; CHECK runs in order and DEL in reverse order, both with the cached result as
 * prevResult (from 0.4.0). Plugins run inside `hostNs` (nsenter --net), never in the root
 * namespace: ptp and bridge create their host-side interfaces where the plugin process runs.
 */
export const REPO = resolve(fileURLToPath(import.meta.url), '../../../../..');
const BUNDLE = join(REPO, 'dist/cni/kata-cni.js');
export const DEBIAN_CNI_DIR = '/usr/lib/cni';

export interface Invocation {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is. */
  json?: Record<string, unknown>;
}

export interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
  args?: string;
}

export interface RuntimeOptions {
  /** Namespace the plugin processes run in (the "host" side). */
  hostNs: NetnsRef;
  /** CNI_PATH directories. */
  path: string[];
  /** Extra environment (e.g. NODE_EXTRA_CA_CERTS removal is done by not passing it). */
  env?: Record<string, string>;
}

export type PluginConf = Record<string, unknown> & { type: string };

export interface NetworkList {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
}

/** nsenter by absolute path: a test may hand the plugin a PATH without it. */
const NSENTER = ['/usr/bin/nsenter', '/bin/nsenter', '/usr/sbin/nsenter'].find((p) => existsSync(p)) ?? 'nsenter';

function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  if (process.env.NODE_EXTRA_CA_CERTS) env.NODE_EXTRA_CA_CERTS = process.env.NODE_EXTRA_CA_CERTS;
  return { ...env, ...extra };
}

/** Run one plugin binary as a runtime does, inside opts.hostNs. */
export function invoke(
  binary: string,
  command: string,
  att: Partial<Attachment>,
  stdin: string,
  opts: RuntimeOptions,
  extraEnv: Record<string, string> = {},
): Promise<Invocation> {
  const env = baseEnv({
    CNI_COMMAND: command,
    CNI_CONTAINERID: att.containerId ?? '',
    CNI_NETNS: att.netns ?? '',
    CNI_IFNAME: att.ifname ?? '',
    CNI_ARGS: att.args ?? '',
    CNI_PATH: opts.path.join(':'),
    ...opts.env,
    ...extraEnv,
  });
  return new Promise((resolvePromise, reject) => {
    const child = spawn(NSENTER, [`--net=${opts.hostNs.path}`, binary], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const r: Invocation = { exitCode: code ?? -1, stdout, stderr: Buffer.concat(err).toString('utf8') };
      try {
        if (stdout.trim() !== '') r.json = JSON.parse(stdout);
      } catch {
        // left undefined: the caller asserts on it
      }
      resolvePromise(r);
    });
  });
}

function findPlugin(type: string, path: string[]): string {
  for (const d of path) {
    const p = join(d, type);
    if (existsSync(p)) return p;
  }
  throw new Error(`plugin ${type} not found on CNI_PATH ${path.join(':')}`);
}

/** The request configuration a runtime derives for one plugin of a list (spec section 3). */
function requestConfig(
  list: NetworkList,
  plugin: PluginConf,
  prevResult?: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): string {
  const conf: Record<string, unknown> = { ...plugin, cniVersion: list.cniVersion, name: list.name, ...extra };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return JSON.stringify(conf);
}

class CniFailure extends Error {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly inv: Invocation,
  ) {
    super(`${plugin} ${command} exited ${inv.exitCode}: ${inv.stdout.trim() || inv.stderr.trim()}`);
  }
}

/** ADD the list; returns the final ("cached") result. Stops at the first error, as libcni. */
export async function addList(list: NetworkList, att: Attachment, opts: RuntimeOptions): Promise<Record<string, unknown>> {
  let prev: Record<string, unknown> | undefined;
  for (const p of list.plugins) {
    const inv = await invoke(findPlugin(p.type, opts.path), 'ADD', att, requestConfig(list, p, prev), opts);
    if (inv.exitCode !== 0 || !inv.json) throw new CniFailure(p.type, 'ADD', inv);
    prev = inv.json;
  }
  return prev!;
}

/** CHECK the list with the cached result. */
export async function checkList(list: NetworkList, att: Attachment, cached: Record<string, unknown>, opts: RuntimeOptions): Promise<void> {
  for (const p of list.plugins) {
    const inv = await invoke(findPlugin(p.type, opts.path), 'CHECK', att, requestConfig(list, p, cached), opts);
    if (inv.exitCode !== 0) throw new CniFailure(p.type, 'CHECK', inv);
  }
}

/** DEL the list in reverse order with the cached result (omitted when undefined, or before 0.4.0). */
export async function delList(
  list: NetworkList,
  att: Attachment,
  cached: Record<string, unknown> | undefined,
  opts: RuntimeOptions,
): Promise<void> {
  const withPrev = cached !== undefined && list.cniVersion !== '0.3.0' && list.cniVersion !== '0.3.1';
  for (const p of [...list.plugins].reverse()) {
    const inv = await invoke(findPlugin(p.type, opts.path), 'DEL', att, requestConfig(list, p, withPrev ? cached : undefined), opts);
    if (inv.exitCode !== 0) throw new CniFailure(p.type, 'DEL', inv);
  }
}

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/** A temp dir removed when the test ends. */
export function tempDir(t: Teardownable, tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `krt-${tag}-`));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Newest modification time of the files the bundle is built from. */
function newestSource(): number {
  let newest = 0;
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mjs|json)$/.test(e.name)) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of ['cni', 'host', 'plugins']) walk(join(REPO, d));
  return newest;
}

let bundleChecked = false;

/**
 * The tests run the bundle, not the tsc output: rebuild it when a source is newer (a plain
 * `tsc -p .` does not), so a test never exercises stale code.
 */
export async function ensureFreshBundle(): Promise<void> {
  if (bundleChecked) return;
  if (!existsSync(BUNDLE) || statSync(BUNDLE).mtimeMs < newestSource()) {
    await run(process.execPath, [join(REPO, 'cni/build/bundle.mjs')]);
  }
  bundleChecked = true;
}

/** Install the bundle into a fresh bin dir with the project's install-cni script; returns the dir. */
export async function installKataCni(t: Teardownable): Promise<string> {
  await ensureFreshBundle();
  const bin = tempDir(t, 'cnibin');
  await run(process.execPath, [join(REPO, 'cni/build/install.mjs'), '--bin-dir', bin]);
  return bin;
}

/** Files left anywhere under dir (recursively), relative. */
export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, '');
  return out.sort();
}
