import type { DaemonRecord } from '../../host/daemon.js';
import type { Logger } from '../../host/log.js';
import type { PluginContext } from '../../host/plugin.js';
import type { AgentClient } from '../agent/client.js';
import type { Journal } from './journal.js';
import type { SandboxPlugins } from './resources.js';

/** What the sandbox's step modules (assemble, hotplug) share: its context, journal, plugins and agent. */
export interface SandboxCore {
  readonly id: string;
  readonly ctx: PluginContext;
  readonly journal: Journal;
  readonly plugins: SandboxPlugins;
  readonly log: Logger;
  /** Step timings of `up` and `down` (ms). */
  readonly timings: Record<string, number>;
  /** The agent connection (E_AGENT when there is none). */
  readonly agent: AgentClient;
  setAgent(agent: AgentClient): void;
  /** Watch the VM's exit: one nobody asked for fails the sandbox. */
  watchVm(): void;
  recordProcess(role: string, rec: DaemonRecord): Promise<void>;
}
