/**
 * `delete`: what containerd runs after every connection to the shim closed (a normal teardown or a
 * crash of the shim) and on its own restart for a bundle it cannot reach. It must be idempotent,
 * finish within containerd's 5 s, print only a DeleteResponse, and never tear down a VM that a live
 * shim still serves. With the shim gone, the pod's sandbox is taken down from its persisted state
 * (by the container that owned it), and the bundle's rootfs is unmounted.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import { lstatSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import type { Logger } from '../host/log.js';
import { readMountinfo, unmount } from '../host/mounts.js';
import { removeSandbox } from '../runtime-core/sandbox/remove.js';
import { StateStore } from '../runtime-core/state/store.js';
import { DAEMON_STDERR, groupOf, groupSocket, readBundleRecord, readBundleSpec } from './bundle.js';
import type { ShimFlags } from './flags.js';
import { DeleteResponseSchema } from './generated/containerd/runtime/v2/task/shim_pb.js';

function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 1000);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/** The last bytes of a file, or '' when there is none. */
function tail(path: string, max: number): string {
  try {
    const b = readFileSync(path);
    return b
      .subarray(Math.max(0, b.length - max))
      .toString('utf8')
      .trim();
  } catch {
    return '';
  }
}

export async function runDelete(f: ShimFlags, log: Logger): Promise<Uint8Array> {
  const bundle = f.bundle ?? process.cwd();
  const rec = readBundleRecord(bundle);
  let sandboxId = rec?.sandboxId;
  if (!sandboxId) {
    try {
      sandboxId = groupOf(f.id, readBundleSpec(bundle).annotations ?? {}).sandboxId;
    } catch {
      sandboxId = f.id;
    }
  }
  const socket = groupSocket(f.address, f.namespace, sandboxId);
  const alive = await listening(socket);
  if (!alive) {
    // A crashed daemon's socket stays behind (containerd's runc shim removes it the same way).
    try {
      if (lstatSync(socket).isSocket()) unlinkSync(socket);
    } catch {
      /* already gone */
    }
    // What a crashed daemon printed: containerd logs our stderr as "cleanup warnings".
    const said = tail(join(bundle, DAEMON_STDERR), 4096);
    if (said) process.stderr.write(`the shim daemon of ${f.id} wrote before it ended:\n${said}\n`);
    if (rec && rec.role !== 'container') {
      try {
        await removeSandbox(rec.sandboxId, new StateStore(rec.stateDir, log), log);
      } catch (e) {
        log.warn(
          { err: (e as Error).message, sandbox: rec.sandboxId },
          'the sandbox could not be removed completely; `kata-resources sandbox down` retries',
        );
      }
    }
    const rootfs = join(bundle, 'rootfs');
    for (let i = 0; i < 8 && readMountinfo().some((m) => m.mountPoint === rootfs); i++) await unmount(rootfs, log).catch(() => {});
  }
  // As the runc shim and Kata answer: SIGKILL's status, now.
  return toBinary(DeleteResponseSchema, create(DeleteResponseSchema, { pid: 0, exitStatus: 137, exitedAt: timestampNow() }));
}
