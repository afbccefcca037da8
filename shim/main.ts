#!/usr/bin/env node
/**
 * containerd-shim-kata-resources-v2: the containerd shim v2 of kata-resources (runtime
 * io.containerd.kata-resources.v2). `start` prints the pod shim's address, `delete` cleans up after
 * a container, and without an action word it is the pod's shim daemon (started by `start`).
 */
import { isKataError } from '../host/errors.js';
import { pino } from 'pino';
import { runDaemon } from './daemon.js';
import { runDelete } from './delete.js';
import { parseShimFlags } from './flags.js';
import { runStart } from './start.js';

async function main(): Promise<number> {
  const f = parseShimFlags(process.argv.slice(2));
  if (f.action === 'start') {
    process.stdout.write(await runStart(f));
    return 0;
  }
  if (f.action === 'delete') {
    // stderr is logged by containerd as cleanup warnings; stdout carries only the response.
    const log = pino({ level: process.env.KATA_LOG_LEVEL ?? 'warn' }, pino.destination({ fd: 2, sync: true }));
    process.stdout.write(await runDelete(f, log));
    return 0;
  }
  await runDaemon(f);
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    // containerd shows this text (start's combined output) to the user.
    const msg = isKataError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
    process.stderr.write(`containerd-shim-kata-resources-v2: ${msg}\n`);
    process.exitCode = 1;
  },
);
