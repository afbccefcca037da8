/**
 * One request to the sandbox's guest agent on behalf of a person (`kata-resources agent ID METHOD`,
 * the seeds' agent control tool): for learning and debugging the protocol. Methods that would
 * break what the supervisor itself holds (the guest's network and mounts it configured, the
 * processes of its exec sessions and containers, the guest's life) are refused unless forced.
 */
import { KataError } from '../../host/errors.js';
import { AGENT_METHODS, type AgentMethod } from '../../guest/agent/protocol.js';
import type { AgentClient } from '../agent/client.js';

/** Reads and harmless one-shot commands: answered without --force. */
const SAFE: ReadonlySet<AgentMethod> = new Set<AgentMethod>([
  'Check',
  'Version',
  'ListInterfaces',
  'ListRoutes',
  'ListMounts',
  'ListContainers',
  'Exec',
]);

export async function agentCall(agent: AgentClient, method: string, params: unknown, force: boolean): Promise<unknown> {
  if (!(AGENT_METHODS as readonly string[]).includes(method))
    throw new KataError('E_INVALID_ARGUMENT', `agent method "${method}" does not exist (one of ${AGENT_METHODS.join(', ')})`, { method });
  const m = method as AgentMethod;
  if (!SAFE.has(m) && !force)
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `agent method ${m} changes what the supervisor manages (the guest's network, mounts, processes or life); only ${[...SAFE].join(', ')} are sent without --force`,
      { method: m },
    );
  if (params !== undefined && (params === null || typeof params !== 'object' || Array.isArray(params)))
    throw new KataError('E_INVALID_ARGUMENT', `agent ${m}: params must be a JSON object`, { method: m });
  return agent.call(m, (params ?? {}) as never, { timeoutMs: 60_000 });
}
