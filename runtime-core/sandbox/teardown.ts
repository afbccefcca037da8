import { isKataError } from '../../host/errors.js';
import { netnsIdentity, sameIdentity } from '../../host/netns.js';
import type { PluginContext } from '../../host/plugin.js';
import type { Journal } from './journal.js';
import type { DoneRecord, IntentRecord, Plugins, ResourceKind } from './resources.js';

/**
 * Undo a sandbox from its journal, newest first, one loop over the registry's plugins. `live`: the
 * process that made the resources undoes them (plugins may use live objects); `recover`: the records
 * alone (the supervisor is gone). An intent without a result is swept by the plugin's conventions.
 * A record is forgotten only once its resource is undone; every failure is collected and returned,
 * so a caller never reports "removed" while something remains.
 */
export type TeardownMode = 'live' | 'recover';

function undoDone<K extends ResourceKind>(plugins: Plugins, ctx: PluginContext, r: DoneRecord<K>, mode: TeardownMode): Promise<void> {
  const p = plugins[r.kind];
  return mode === 'live' ? p.detach(ctx, r.data) : p.recover(ctx, r.data);
}

async function sweepIntent<K extends ResourceKind>(plugins: Plugins, ctx: PluginContext, r: IntentRecord<K>): Promise<void> {
  const p = plugins[r.kind];
  if (p.sweep) await p.sweep(ctx, r.config);
  else ctx.log.warn({ resource: r.id, kind: r.kind }, 'an interrupted attach of this kind cannot be swept; check by hand');
}

/** Whether the namespace the context names is still the one the sandbox recorded (or gone with everything in it). */
function namespaceReplaced(j: Journal, ctx: PluginContext): boolean {
  const rec = j.state.netns;
  if (!rec || !ctx.netns) return false;
  const now = netnsIdentity(ctx.netns.path);
  return now !== undefined && !sameIdentity(now, rec);
}

export async function teardownJournal(j: Journal, plugins: Plugins, ctx: PluginContext, mode: TeardownMode): Promise<string[]> {
  const problems: string[] = [];
  const replaced = namespaceReplaced(j, ctx);
  for (const r of [...j.state.resources].reverse()) {
    try {
      if (replaced && (r.kind === 'endpoint' || r.kind === 'netns')) {
        // The namespace at that path is another one now: the sandbox's went away with its devices,
        // and this one is not ours to change (kata-cni does the same).
        ctx.log.warn(
          { resource: r.id, netns: ctx.netns?.path },
          'the sandbox namespace was replaced; its endpoints went with it, the new one is left alone',
        );
      } else if (r.phase === 'done') {
        await undoDone(plugins, ctx, r, mode);
      } else if (mode === 'recover') {
        await sweepIntent(plugins, ctx, r);
      }
      await j.forget(r.id);
    } catch (e) {
      const msg = isKataError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
      ctx.log.warn({ resource: r.id, kind: r.kind, err: msg }, 'teardown step failed; continuing');
      problems.push(`${r.id}: ${msg}`);
    }
  }
  return problems;
}
