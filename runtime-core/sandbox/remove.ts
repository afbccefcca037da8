import { KataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import { isSameProcessAlive } from '../../host/proc.js';
import type { SandboxState, StateStore } from '../state/store.js';
import { mgmtCall } from '../supervisor/mgmt-client.js';
import { MGMT_SOCKET } from '../supervisor/mgmt-protocol.js';
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Journal } from './journal.js';
import { createPlugins } from './resources.js';
import { sandboxContext } from './sandbox.js';
import { teardownJournal } from './teardown.js';

export function supervisorAlive(s: SandboxState): boolean {
  const sup = s.processes.supervisor;
  return sup !== undefined && isSameProcessAlive(sup.pid, sup.startTime);
}

/** SIGKILL the supervisor, only while its pid still names that process (pid + start time: a reused pid is never signalled). */
function killSupervisor(s: SandboxState): void {
  const sup = s.processes.supervisor;
  if (!sup || !isSameProcessAlive(sup.pid, sup.startTime)) return;
  try {
    process.kill(sup.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/**
 * The supervisor exits just after it answered Shutdown: wait for that (bounded; SIGKILL after), so
 * that when `down` returns no process of the sandbox is left.
 */
async function supervisorExited(s: SandboxState, timeoutMs = 5000): Promise<void> {
  const sup = s.processes.supervisor;
  if (!sup) return;
  const end = Date.now() + timeoutMs;
  while (isSameProcessAlive(sup.pid, sup.startTime)) {
    if (Date.now() > end) {
      killSupervisor(s);
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Take a sandbox down: through its supervisor (the CLI's, or the containerd shim that owns it) when
 * alive, else from its persisted state; what cannot be removed keeps the state and is thrown
 * (E_STATE). Idempotent.
 */
export async function removeSandbox(
  id: string,
  store: StateStore,
  log: Logger,
): Promise<{ id: string; state: 'removed' | 'absent'; via: 'supervisor' | 'state' | 'none'; timings?: Record<string, number> }> {
  return store.withLock(id, async () => {
    const s = await store.tryLoad(id);
    if (!s) {
      // An empty directory is what a start that died before its first state write leaves (under
      // the lock no start is under way): it goes; anything in it is left alone.
      await rmdir(store.sandboxDir(id)).catch(() => {});
      return { id, state: 'absent' as const, via: 'none' as const };
    }
    if (supervisorAlive(s)) {
      try {
        const r = await mgmtCall(join(store.runDir(id), MGMT_SOCKET), 'Shutdown', {}, 120_000);
        await supervisorExited(s);
        return { id, state: 'removed' as const, via: 'supervisor' as const, ...(r.timings ? { timings: r.timings } : {}) };
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'supervisor did not take the sandbox down; cleaning from state');
        killSupervisor(s);
      }
    }
    const fresh = (await store.tryLoad(id)) ?? s;
    const problems = await teardownFromState(fresh, store, log);
    if (problems.length > 0) {
      fresh.phase = 'failed';
      fresh.error = { code: 'E_STATE', message: `teardown left: ${problems.join('; ')}` };
      await store.save(fresh).catch(() => {});
      throw new KataError(
        'E_STATE',
        `sandbox ${id}: could not remove everything: ${problems.join('; ')}; fix that and run \`kata-resources sandbox down ${id}\` again`,
        {
          problems,
        },
      );
    }
    await store.remove(id);
    return { id, state: 'removed' as const, via: 'state' as const };
  });
}

/** Undo a sandbox from its persisted journal alone (its supervisor is gone); what could not be removed is returned. */
async function teardownFromState(state: SandboxState, store: StateStore, log: Logger): Promise<string[]> {
  const ctx = sandboxContext(state, store, log.child({ sandbox: state.id }));
  const plugins = createPlugins({ hypervisor: 'qemu' });
  try {
    return await teardownJournal(new Journal(state, store), plugins, ctx, 'recover');
  } finally {
    await ctx.netlink.close();
  }
}
