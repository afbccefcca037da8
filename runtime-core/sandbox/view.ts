import type { SandboxState } from '../state/store.js';
import { viewOf, type ResourceView } from './resources.js';

/** The sandbox as the CLI prints it: its state, namespace, processes, and what each resource contributes. */
export interface SandboxView extends Omit<ResourceView, 'vm'> {
  id: string;
  state: SandboxState['phase'];
  netns: { path: string; name?: string; created: boolean } | undefined;
  pids: Record<string, number>;
  accel?: string;
  consoleLog?: string;
  error?: { code: string; message: string };
  timings?: Record<string, number>;
}

/** The printable form of a state (also used by the CLI when the supervisor is gone). */
export function sandboxView(state: SandboxState, timings?: Record<string, number>): SandboxView {
  const { vm, ...rest } = viewOf(state.resources);
  const pids: Record<string, number> = {};
  for (const [k, v] of Object.entries(state.processes)) pids[k] = v.pid;
  const t = timings && Object.keys(timings).length > 0 ? timings : state.timings;
  const accel = vm?.details.accel;
  return {
    id: state.id,
    state: state.phase,
    netns: state.netns
      ? { path: state.netns.path, ...(state.netns.name ? { name: state.netns.name } : {}), created: state.netns.created }
      : undefined,
    pids,
    ...rest,
    ...(typeof accel === 'string' ? { accel } : {}),
    ...(vm ? { consoleLog: vm.consoleLog } : {}),
    ...(state.error ? { error: state.error } : {}),
    ...(t ? { timings: t } : {}),
  };
}
