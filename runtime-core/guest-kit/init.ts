/**
 * kata-init, the guest's PID 1 (guest/init/kata-init.c): mounts what the agent and runc need, then
 * runs the agent and restarts it when it dies, with no shell and no exec but the agent's (a busybox
 * exec costs about 20 ms under TCG; the shell script it replaces made a dozen). The agent's command
 * line is compiled in (AGENT_ARGV), from the constants here, which the rootfs layout and the code
 * cache's training share.
 */
import { AGENT_PORT_NAME } from '../../guest/agent/protocol.js';
import { buildStaticC, guestSource, staticCInputsHash } from './static-c.js';

/** kata-init's early agent (guest/init/early-agent.c), which serves the port while node starts. */
export const EARLY_AGENT_SOURCES = ['early-agent.c', 'early-agent.h', 'early-json.c', 'early-json.h'].map((f) => guestSource('init', f));
/** kata-init with it. */
export const INIT_SOURCES = [guestSource('init', 'kata-init.c'), ...EARLY_AGENT_SOURCES];

/** The guest's node (rootfs.ts copies the host's there). */
export const GUEST_NODE = '/usr/bin/node';
/** The agent's start in the guest (beside it: the agent bundle, its code cache and kata-monitor). */
export const AGENT_START_PATH = '/opt/kata-agent/start.cjs';
/**
 * V8 flags the guest's node runs the agent with; the code cache is made with the same flags (V8
 * rejects a cache made under others). None: in a TCG guest (2 December 2026, median of 10 in one
 * guest, each with its own cache) --jitless, --v8-pool-size=1, --single-threaded, --max-lazy and
 * combinations served 20-130 ms later than no flag (697 ms; `node -e 0` 626 ms): the agent's start
 * is node's own.
 */
export const AGENT_NODE_FLAGS: readonly string[] = [];

/** The agent's argv in the guest. */
export function agentArgv(): string[] {
  return [GUEST_NODE, ...AGENT_NODE_FLAGS, AGENT_START_PATH];
}

function defines(): string[] {
  for (const a of agentArgv())
    if (!/^[\w./=,:+-]+$/.test(a))
      throw new Error(`guest agent argument ${JSON.stringify(a)} has characters kata-init's build does not quote`);
  if (!/^[\w.-]+$/.test(AGENT_PORT_NAME))
    throw new Error(`agent port name ${AGENT_PORT_NAME} has characters kata-init's build does not quote`);
  return [
    `-DAGENT_ARGV=${agentArgv()
      .map((a) => `"${a}"`)
      .join(',')}`,
    `-DAGENT_PORT="${AGENT_PORT_NAME}"`,
  ];
}

export function initInputsHash(): Promise<string> {
  return staticCInputsHash(INIT_SOURCES, defines());
}

export function buildInit(out: string): Promise<void> {
  return buildStaticC('kata-init', INIT_SOURCES, out, defines());
}
