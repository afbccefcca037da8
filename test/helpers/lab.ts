import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { processesMentioning } from './sandbox.js';

/** The repository root (dist/test/helpers -> ../../..). */
export const REPO = join(import.meta.dirname, '..', '..', '..');
const LAB_SH = join(REPO, 'scripts', 'lab.sh');

export interface LabResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The run directory lab.sh --verbose named (undefined when it never got that far). */
  runDir: string | undefined;
}

export interface LabChild {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  done: Promise<LabResult>;
}

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/**
 * Start `scripts/lab.sh --verbose ARGS` (lab.sh execs node, so proc.pid is the lab's own process).
 * Killed by its pid when the test ends, if still running.
 */
export function startLab(t: Teardownable, args: readonly string[], opts: { cwd?: string } = {}): LabChild {
  const proc = spawn(LAB_SH, ['--verbose', ...args], { cwd: opts.cwd ?? REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const done = new Promise<LabResult>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err, runDir: labRunDir(err) })),
  );
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await done;
    }
  });
  return { proc, stdout: () => out, stderr: () => err, done };
}

export function runLab(t: Teardownable, args: readonly string[], opts: { cwd?: string } = {}): Promise<LabResult> {
  return startLab(t, args, opts).done;
}

/** The run directory from lab.sh --verbose's "booting ... (qemu pid N, run dir DIR)" line. */
export function labRunDir(stderr: string): string | undefined {
  return /run dir (\/\S+)\)/.exec(stderr)?.[1];
}

/** What is left of a run: its directory, processes naming it, virtiofsd's pid file. */
function labLeftovers(runDir: string): string[] {
  const left = processesMentioning(runDir).map((p) => `${p.pid}: ${p.cmdline.slice(0, 160)}`);
  if (existsSync(runDir)) left.push(`directory ${runDir}`);
  const pidFile = `/run/virtiofsd/${join(runDir, 'vfs.sock').replace(/\//g, '.')}.pid`;
  if (existsSync(pidFile)) left.push(`pid file ${pidFile}`);
  return left;
}

/** Poll until nothing is left of the run (the reaper and pdeathsig act asynchronously), at most ms. */
export async function waitNoLeftovers(runDir: string, ms = 15_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = labLeftovers(runDir);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Run a tap test file (built JS, relative to the repository) inside the kernel lab and assert that
 * it really passed there: exit 0, at least one result, no failure, and no skip or todo (a part
 * missing inside the lab is a failure here, not a skip).
 */
export async function tapFileInLab(t: Test, file: string, modules: readonly string[], env: readonly string[] = []): Promise<LabResult> {
  const r = await runLab(t, [
    '--modules',
    modules.join(','),
    '--env',
    'TAP_TIMEOUT=1800',
    ...env.flatMap((e) => ['--env', e]),
    '--',
    'node',
    file,
  ]);
  if (r.code !== 0) t.comment(`inner TAP:\n${r.stdout}\nlab stderr:\n${r.stderr}`);
  t.equal(r.code, 0, `${file} passed in the kernel lab`);
  t.ok(/^ok \d+ /m.test(r.stdout), 'the inner file reported results');
  t.notMatch(r.stdout, /^\s*not ok /m, 'no inner failure');
  t.notMatch(r.stdout, /^\s*ok \d+ .*# (SKIP|TODO)/m, 'nothing skipped inside the lab');
  if (r.runDir) t.same(await waitNoLeftovers(r.runDir), [], 'nothing of the VM is left');
  return r;
}
