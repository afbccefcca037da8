/**
 * The runc calls the agent makes, and the guest paths they use. Kata's layout: the bundle of
 * container <cid> is /run/kata-containers/<cid>/ (config.json, rootfs/ a bind of the shared or
 * mounted rootfs); runc keeps its state in /run/runc/<cid>.
 */
import { fsp } from './builtins.js';
import { join } from 'node:path';
import { AgentError } from './protocol.js';
import type { CommandRunner } from './runner.js';

export interface RuncContext {
  run: CommandRunner;
  /** The runc binary. */
  runc: string;
  /** runc --root (state directory). */
  runcRoot: string;
  /** cgroup2 mount point (for tidying empty parents after runc delete). */
  cgroupRoot?: string;
}

/** runc's container id rule (libcontainer: ^[\w+-\.]+$), kept shorter so paths stay sane. */
export function checkContainerId(id: unknown): string {
  if (typeof id !== 'string' || !/^[\w+.-]{1,128}$/.test(id) || id === '.' || id === '..')
    throw new AgentError('E_INVALID_ARGUMENT', `container_id ${JSON.stringify(id)} must be 1-128 of [A-Za-z0-9_+.-]`);
  return id;
}

export function runcBase(ctx: RuncContext): string[] {
  return [ctx.runc, '--root', ctx.runcRoot];
}

async function runc(ctx: RuncContext, args: string[], what: string): Promise<string> {
  const [file, ...base] = runcBase(ctx);
  const r = await ctx.run(file!, [...base, ...args], { timeoutMs: 60_000 });
  if (r.exitCode !== 0) {
    const msg = r.stderr.trim() || r.stdout.trim() || `exit ${r.exitCode}`;
    throw new AgentError('E_RUNC', `${what}: runc ${args.join(' ')}: ${msg}`);
  }
  return r.stdout;
}

export async function runcStart(ctx: RuncContext, cid: string): Promise<void> {
  await runc(ctx, ['start', cid], `StartContainer ${cid}`);
}

/** Signal every process of the container; a container with nothing left to signal is not an error. */
export async function runcKillAll(ctx: RuncContext, cid: string, signal: number): Promise<void> {
  try {
    await runc(ctx, ['kill', '--all', cid, String(signal)], `signal ${signal} to container ${cid}`);
  } catch (e) {
    if (!/not running|does not exist|no such process|container not running/i.test((e as Error).message)) throw e;
  }
}

/** runc delete --force; absent containers are fine. Then remove empty cgroup parents runc leaves. */
export async function runcDelete(ctx: RuncContext, cid: string, cgroupsPath?: string): Promise<void> {
  try {
    await runc(ctx, ['delete', '--force', cid], `RemoveContainer ${cid}`);
  } catch (e) {
    if (!/does not exist|not exist/i.test((e as Error).message)) throw e;
  }
  if (!cgroupsPath || !ctx.cgroupRoot) return;
  const parts = cgroupsPath.split('/').filter(Boolean);
  for (let i = parts.length - 1; i >= 1; i--) {
    const dir = join(ctx.cgroupRoot, ...parts.slice(0, i));
    const kids = await fsp()
      .readdir(dir, { withFileTypes: true })
      .catch(() => undefined);
    if (!kids || kids.some((k) => k.isDirectory())) break;
    if (
      !(await fsp()
        .rmdir(dir)
        .then(
          () => true,
          () => false,
        ))
    )
      break;
  }
}
