/**
 * The per-sandbox supervisor process: started detached by `kata-resources sandbox up`, it builds the
 * sandbox, owns QEMU, virtiofsd and the agent connection, and serves the management socket until
 * the sandbox is taken down or fails. Progress and the final result go to fd 3 as JSON lines, which
 * the CLI reads; logs go to stderr (a file the CLI opened).
 *
 *   node supervisor/main.js --id ID [--netns NAME|PATH] [--config FILE]
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KataError, isKataError } from '../../host/errors.js';
import { rootLogger } from '../../host/log.js';
import { loadConfig } from '../config/load-config.js';
import { StateStore } from '../state/store.js';
import { Sandbox, networkOptions } from '../sandbox/sandbox.js';
import { resolveGuestImage } from '../sandbox/guest-image.js';
import { qemuVmDriver } from '../sandbox/qemu-vm.js';
import { MGMT_SOCKET } from './mgmt-protocol.js';
import { serveManagement } from './server.js';
import { readProcStat } from '../../host/proc.js';

/**
 * Test hook: KATA_RESOURCES_FAULT=<step> makes `up` fail at that named step (see STEPS in
 * sandbox.ts and the plugins' checkpoint names), so end-to-end tests can prove the rollback of the
 * real CLI path. Nothing else reads it.
 */
function faultFromEnv(): { faults?: (step: string) => void } {
  const want = process.env.KATA_RESOURCES_FAULT;
  if (!want) return {};
  return {
    faults: (step: string) => {
      if (step === want) throw new KataError('E_INTERNAL', `fault injected at step ${step} (KATA_RESOURCES_FAULT)`);
    },
  };
}

async function main(): Promise<void> {
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
  const config = loadConfig(a.config, { log });
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
      vm: qemuVmDriver(),
      guest: () => resolveGuestImage(config, (m) => say({ progress: m })),
      ...faultFromEnv(),
      onProgress: (m) => say({ progress: m }),
    });
  } catch (e) {
    const err = isKataError(e) ? e : new KataError('E_INTERNAL', (e as Error).message);
    say({ ok: false, error: { code: err.code, message: err.message } });
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
  const server = await serveManagement(
    join(store.sandboxDir(id), MGMT_SOCKET),
    sandbox,
    log,
    () => {
      server.close();
      process.exit(0);
    },
    () => networkOptions(config),
  );
  sandbox.on('failed', () => {
    server.close();
    process.exit(1);
  });
  const shutdown = (): void => {
    void sandbox.down().finally(() => process.exit(0));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  say({ ok: true, sandbox: sandbox.view() });
  report?.end();
}

main().catch((e) => {
  rootLogger().error({ err: (e as Error).message }, 'supervisor failed');
  process.exitCode = 1;
});
