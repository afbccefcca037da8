/**
 * kata-monitor, the agent's per-process helper (guest/monitor/kata-monitor.c): a subreaper that
 * takes runc's pty master over the console socket and relays it, things Node cannot do. Built
 * static with the host's gcc when the guest kit is built (and by tests that run the agent on the
 * host); no package ships an equivalent small binary (conmon needs glib and its own protocol).
 */
import { buildStaticC, guestSource, staticCInputsHash } from './static-c.js';

export const MONITOR_SOURCE = guestSource('monitor', 'kata-monitor.c');

/** What the monitor binary depends on: its source, the flags and the compiler. */
export function monitorInputsHash(): Promise<string> {
  return staticCInputsHash(MONITOR_SOURCE);
}

export function buildMonitor(out: string): Promise<void> {
  return buildStaticC('kata-monitor', MONITOR_SOURCE, out);
}
