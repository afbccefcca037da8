/**
 * The sandbox's boot-time requests, applied through kata-init's early agent.
 *
 * Under TCG node's agent serves 0.6-1.1 s after kata-init starts it, and `sandbox up` waited for it.
 * kata-init's early agent (guest/init/early-agent.c) serves the port at once, but knows only Check
 * and Exec. When it answers the host's Check, the host runs the agent's own code for
 * UpdateInterface, UpdateRoutes and AddARPNeighbors (guest/agent/network.ts) with an `ip` that runs
 * in the guest through Exec: the same code, the same `ip -batch` lines, the same guest `ip`, the
 * same errors, as when node's agent runs them, less the read-back of the results, which the boot
 * does not use (each `ip` run costs 35-45 ms under TCG). The share kata-init mounted at boot is
 * in the early agent's Check answer (`sharefs`), as kata.sharefs= gave it: that storage is done.
 * Only what that code reads from the guest's sysfs cannot be read from here: an interface found
 * neither by its MAC nor by its name but with a PCI path (a netdev still appearing), and any other
 * storage, go to the agent's own calls, which the early agent hands over to node's agent.
 *
 * Errors are reported as the client reports the agent's: E_AGENT, details.agentCode the agent's code.
 */
import type { ARPNeighbor, Interface, Route, Storage } from '../../host/agent-types.js';
import { KataError } from '../../host/errors.js';
import { makeIp } from '../../guest/agent/ip.js';
import { addArpNeighbors, applyInterface, applyRoutes, ipv6DisabledBy, type NetworkContext } from '../../guest/agent/network.js';
import { AgentError } from '../../guest/agent/protocol.js';
import type { CommandRunner } from '../../guest/agent/runner.js';
import type { AgentClient } from '../agent/client.js';
import { SHAREFS_PARAM, shareAtBootParam } from '../guest-kit/share-param.js';

export interface BootRequests {
  interfaces: Interface[];
  routes: Route[];
  neighbors: ARPNeighbor[];
  storages: Storage[];
}

/** Each part's outcome; interfaces, routes and neighbours run in that order, the storages beside them. */
export interface BootApply {
  interfaces: Promise<unknown>;
  routes: Promise<unknown>;
  neighbours: Promise<unknown>;
  storages: Promise<unknown>;
}

/** A CommandRunner (guest/agent/runner.ts) whose commands run in the guest through the agent's Exec. */
function execRunner(agent: AgentClient): CommandRunner {
  return async (file, args, opts = {}) => {
    try {
      return await agent.exec([file, ...args], { input: opts.input, timeoutMs: opts.timeoutMs, env: opts.env, cwd: opts.cwd });
    } catch (e) {
      // what spawnRunner says of a program it cannot start
      if (e instanceof KataError && e.details.agentCode === 'E_EXEC')
        return { stdout: '', stderr: e.message, exitCode: -1, timedOut: false, truncated: false };
      throw e;
    }
  };
}

/** An error of the agent's code as the client reports the agent's own errors. */
function asAgentError(method: string, e: unknown): unknown {
  return e instanceof AgentError ? new KataError('E_AGENT', `agent ${method}: ${e.message} (${e.code})`, { method, agentCode: e.code }) : e;
}

async function call<T>(method: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    throw asAgentError(method, e);
  }
}

async function oneInterface(agent: AgentClient, ctx: NetworkContext, iface: Interface): Promise<unknown> {
  try {
    return await applyInterface(ctx, iface);
  } catch (e) {
    if (e instanceof AgentError && e.code === 'E_LINK_NOT_FOUND' && iface.devicePath) return agent.updateInterface(iface);
    throw asAgentError('UpdateInterface', e);
  }
}

/** The storages kata-init has not mounted at boot, to the agent's AddStorages (node's agent then). */
function storagesLeft(agent: AgentClient, storages: Storage[]): Promise<unknown> {
  const mounted = agent.bootShare === undefined ? undefined : `${SHAREFS_PARAM}=${agent.bootShare}`;
  const rest = storages.filter((s) => mounted === undefined || shareAtBootParam(s) !== mounted);
  return rest.length > 0 ? agent.addStorages(rest) : Promise.resolve();
}

export function applyThroughExec(agent: AgentClient, p: BootRequests): BootApply {
  const run = execRunner(agent);
  const read = async (path: string): Promise<string> => {
    const r = await run('cat', [path]);
    if (r.exitCode !== 0) throw new Error(r.stderr.trim());
    return r.stdout;
  };
  const ctx: NetworkContext = { ip: makeIp(run), ipv6Disabled: (ifname) => ipv6DisabledBy(read, ifname) };
  const interfaces = (async () => {
    for (const iface of p.interfaces) await oneInterface(agent, ctx, iface);
  })();
  const routes = interfaces.then(() => (p.routes.length > 0 ? call('UpdateRoutes', () => applyRoutes(ctx, p.routes)) : undefined));
  const neighbours = routes.then(() =>
    p.neighbors.length > 0 ? call('AddARPNeighbors', () => addArpNeighbors(ctx, p.neighbors)) : undefined,
  );
  const storages = storagesLeft(agent, p.storages);
  return { interfaces, routes, neighbours, storages };
}
