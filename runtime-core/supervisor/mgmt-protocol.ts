/**
 * The supervisor's management API: HTTP/1.1 over a unix socket (0600) in the sandbox directory,
 * like Kata's shim-monitor.sock. JSON bodies; errors are {error: {code, message}} with a 4xx/5xx.
 *
 *   GET  /sandbox            the sandbox as the CLI prints it (state, pids, endpoints, shares)
 *   GET  /sandbox/guest      what the agent reports: interfaces, routes, mounts
 *   POST /exec               {argv, timeoutMs?} -> {exitCode, stdout, stderr}
 *   POST /shares             {source, name?, readonly?} -> the share record (a host dir into the export)
 *   POST /unshare            {name}
 *   POST /shutdown           tear the sandbox down; answered when done, then the supervisor exits
 */
export const MGMT_SOCKET = 'supervisor.sock';

export interface ExecRequest {
  argv: string[];
  timeoutMs?: number;
}
