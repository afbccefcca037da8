/**
 * The per-sandbox supervisor process: started detached by `kata-resources sandbox up`, it builds the
 * sandbox, owns QEMU, virtiofsd and the agent connection, and serves the management socket until
 * the sandbox is taken down or fails. Progress and the final result go to fd 3 as JSON lines, which
 * the CLI reads; logs go to stderr (a file the CLI opened).
 *
 *   node supervisor/main.js --id ID [--netns NAME|PATH] [--config FILE]
 */
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KataError, isKataError } from '../../host/errors.js';
import { rootLogger } from '../../host/log.js';
import { mark, marks, processStart } from '../../host/marks.js';
import { loadConfig } from '../config/load-config.js';
import { StateStore } from '../state/store.js';
import { networkOptions } from '../sandbox/assemble.js';
import { resolveGuestImage } from '../sandbox/guest-image.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { sandboxService } from '../sandbox/service.js';
import { MGMT_SOCKET } from './mgmt-protocol.js';
import { serveManagement } from './server.js';
import { readProcStat } from '../../host/proc.js';
import { consoleTail } from '../sandbox/console-tail.js';
import { forwardGuestConsole } from './guest-log.js';

/**
 * Test hooks: KATA_RESOURCES_FAULT=<step> makes the sandbox fail at that named step (see STEPS in
 * sandbox/assemble.ts, the hotplug steps in sandbox/hotplug.ts and the plugins' checkpoint names),
 * so end-to-end tests can prove the rollback of the real CLI path; KATA_RESOURCES_FAULT_FILE=<path>
 * does the same with the step read from that file at each checkpoint (one sandbox, many faults);
 * KATA_RESOURCES_KILL_AT=<step> SIGKILLs the supervisor itself there (a crash at that point).
 * Nothing else reads them.
 */
function faultFromEnv(): { faults?: (step: string) => void } {
  const want = process.env.KATA_RESOURCES_FAULT;
  const file = process.env.KATA_RESOURCES_FAULT_FILE;
  const killAt = process.env.KATA_RESOURCES_KILL_AT;
  if (!want && !file && !killAt) return {};
  return {
    faults: (step: string) => {
      // A crash exactly there: nothing of ours runs after it (no undo, no state write).
      if (step === killAt) process.kill(process.pid, 'SIGKILL');
      const now = file ? readFileSync(file, 'utf8').trim() : want;
      if (step === now) throw new KataError('E_INTERNAL', `fault injected at step ${step} (KATA_RESOURCES_FAULT)`);
    },
  };
}

async function main(): Promise<void> {
  mark('sup.main');
  const { values: a } = parseArgs({
    args: process.argv.slice(2),
    options: { id: { type: 'string' }, netns: { type: 'string' }, config: { type: 'string' } },
    strict: true,
  });
  let report: WriteStream | undefined;
  try {
    report = createWriteStream('', { fd: 3 });
    report.on('error', () => {
      report = undefined;
    });
  } catch {
    report = undefined;
  }
  const say = (msg: Record<string, unknown>): void => {
    report?.write(`${JSON.stringify(msg)}\n`);
  };
  const log = rootLogger().child({ component: 'supervisor' });
  const id = a.id;
  if (!id) throw new KataError('E_INVALID_ARGUMENT', 'supervisor needs --id');
  // The CLI reported on the file already (once per command).
  const config = loadConfig(a.config, { log, report: false });
  mark('sup.config');
  const store = new StateStore(config.runtime.stateDir, log);
  const netns = a.netns;
  let sandbox: Sandbox;
  try {
    sandbox = await Sandbox.up({
      id,
      ...(netns ? { netns } : {}),
      config,
      store,
      log,
      guest: () => resolveGuestImage(config, (m) => say({ progress: m })),
      ...faultFromEnv(),
      onProgress: (m) => say({ progress: m }),
    });
  } catch (e) {
    const err = isKataError(e) ? e : new KataError('E_INTERNAL', (e as Error).message);
    // The agent gone or QEMU exited: the guest's console usually says why (a failed mount, a panic).
    const tail = err.code === 'E_AGENT' || err.code === 'E_DAEMON_CRASHED' ? consoleTail(join(store.sandboxDir(id), 'console.log')) : [];
    const message = tail.length > 0 ? `${err.message}; the guest console ends with: ${tail.join(' | ')}` : err.message;
    say({ ok: false, error: { code: err.code, message } });
    report?.end();
    process.exitCode = 1;
    return;
  }
  const stat = readProcStat(process.pid);
  await sandbox.recordProcess('supervisor', {
    name: 'supervisor',
    pid: process.pid,
    startTime: stat?.startTime ?? 0,
    file: process.execPath,
  });
  const service = sandboxService(
    sandbox,
    () => networkOptions(config),
    () => {
      server.close();
      process.exit(0);
    },
  );
  const server = await serveManagement(join(store.runDir(id), MGMT_SOCKET), service, log, () => sandbox.agent);
  mark('sup.served');
  sandbox.on('failed', () => {
    server.close();
    process.exit(1);
  });
  // Stopped by a signal: everything goes, as with `down`, and then its log (which `down` would remove).
  const shutdown = (): void => {
    void sandbox
      .down()
      .then(() => rm(store.logPath(id), { force: true }))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  forwardGuestConsole(join(store.sandboxDir(id), 'console.log'), log);
  mark('sup.report');
  say({ ok: true, sandbox: sandbox.view(), marks: { 'sup.process': processStart(), ...marks() } });
  report?.end();
}

main().catch((e) => {
  rootLogger().error({ err: (e as Error).message }, 'supervisor failed');
  process.exitCode = 1;
});
