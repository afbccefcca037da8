/**
 * The guest agent's wire protocol: line-delimited JSON over the virtio-serial port "agent.0".
 *
 *   request  {"id": 7, "method": "UpdateInterface", "params": {"interface": {...}}}\n
 *   response {"id": 7, "result": {...}}\n   or   {"id": 7, "error": {"code": "...", "message": "..."}}\n
 *
 * Method names and parameter/result shapes follow the Kata agent (agent.proto / types.proto with the
 * Go JSON names; the health service's Check). A few administrator calls that Kata spreads over
 * several RPCs are single calls here (Exec, Shutdown, ListMounts, RemoveStorages).
 *
 * This file is imported by the guest (types and constants) and, as types only, by the host-side
 * client (runtime-core/agent/client.ts): the two ends cannot drift apart.
 */
import type { ARPNeighbor, Interface, Route, Storage } from '../../host/agent-types.js';

/** Name of the virtserialport the agent listens on (QEMU `-device virtserialport,name=...`). */
export const AGENT_PORT_NAME = 'agent.0';
/** Version of this protocol, reported by Version. */
export const PROTOCOL_VERSION = 'kata-resources-line-json/1';
/** Lines longer than this are rejected (and the connection resynchronises at the next newline). */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

interface Routes {
  Routes: Route[];
}
interface Interfaces {
  Interfaces: Interface[];
}
interface ARPNeighbors {
  ARPNeighbors: ARPNeighbor[];
}

export interface MountInfo {
  source: string;
  mount_point: string;
  fstype: string;
  options: string[];
}

export interface ExecParams {
  argv: string[];
  /** Killed (SIGKILL) after this many ms; default 30 s. */
  timeoutMs?: number;
  /** Written to the process's stdin, which is then closed. */
  input?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory in the guest (default "/"). */
  cwd?: string;
}

export interface ExecResult {
  /** Exit status; 128 + signal number when killed by a signal. */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** True when the process was killed because it exceeded timeoutMs. */
  timedOut: boolean;
  /** True when stdout or stderr hit the size cap and was cut. */
  truncated: boolean;
}

/** Every method: its params and its result. */
interface AgentMethods {
  /** grpc.health.v1-style health check of the Kata agent. */
  Check: { params: Record<string, never>; result: { status: 'SERVING' | 'NOT_SERVING' } };
  Version: { params: Record<string, never>; result: { grpc_version: string; agent_version: string; kernel_release: string } };
  UpdateInterface: { params: { interface: Interface }; result: Interface };
  UpdateRoutes: { params: { routes: Routes }; result: Routes };
  AddARPNeighbors: { params: { neighbors: ARPNeighbors }; result: Record<string, never> };
  ListInterfaces: { params: Record<string, never>; result: Interfaces };
  ListRoutes: { params: Record<string, never>; result: Routes };
  /** Mount each Storage at its mount_point (created if missing), in order. Kata carries these in CreateSandbox/CreateContainer. */
  AddStorages: { params: { storages: Storage[] }; result: { mount_points: string[] } };
  /** Unmount the storages' mount points (missing mounts are not an error). */
  RemoveStorages: { params: { storages: Pick<Storage, 'mount_point'>[] }; result: Record<string, never> };
  /** Real filesystems mounted in the guest (pseudo filesystems left out). */
  ListMounts: { params: Record<string, never>; result: { mounts: MountInfo[] } };
  /** Run a command in the guest's root environment (an administrator's `exec`). */
  Exec: { params: ExecParams; result: ExecResult };
  /** Acknowledge, then sync and power the guest off. */
  Shutdown: { params: Record<string, never>; result: Record<string, never> };
}

export type AgentMethod = keyof AgentMethods;
export type ParamsOf<M extends AgentMethod> = AgentMethods[M]['params'];
export type ResultOf<M extends AgentMethod> = AgentMethods[M]['result'];

export const AGENT_METHODS: readonly AgentMethod[] = [
  'Check',
  'Version',
  'UpdateInterface',
  'UpdateRoutes',
  'AddARPNeighbors',
  'ListInterfaces',
  'ListRoutes',
  'AddStorages',
  'RemoveStorages',
  'ListMounts',
  'Exec',
  'Shutdown',
];

/** Error codes the agent answers with (the host maps all of them to E_AGENT, keeping this code). */
const AGENT_ERROR_CODES = {
  E_PARSE: 'the request line is not valid JSON or lacks id/method',
  E_UNIMPLEMENTED: 'no such method',
  E_INVALID_ARGUMENT: 'the params do not have the expected shape',
  E_LINK_NOT_FOUND: 'no link matches the interface (message contains "Link not found", as Kata\'s does)',
  E_NETLINK: "an ip command failed; the message carries the command and the kernel's answer",
  E_DEVICE_TIMEOUT: 'a device named by a PCI path, SCSI address or path did not appear in time',
  E_MOUNT: 'a mount or unmount failed',
  E_EXEC: 'a command could not be started',
  E_INTERNAL: 'an unexpected failure inside the agent',
} as const;
export type AgentErrorCode = keyof typeof AGENT_ERROR_CODES;

export interface AgentRequest {
  id: number | string;
  method: string;
  params?: unknown;
}

interface AgentErrorBody {
  code: AgentErrorCode | string;
  message: string;
}

export type AgentResponse =
  | { id: number | string | null; result: unknown; error?: undefined }
  | { id: number | string | null; error: AgentErrorBody; result?: undefined };

/** An error the agent reports to its caller with a code. */
export class AgentError extends Error {
  constructor(
    readonly code: AgentErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AgentError';
  }
}

/**
 * Splits a byte stream into lines. Feed it chunks; it calls onLine for each complete line (without
 * the newline, empty lines skipped) and onOverflow when a line grows past maxBytes (that line is
 * dropped up to its newline).
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private overflowing = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: () => void = () => {},
    private readonly maxBytes = MAX_LINE_BYTES,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) {
        this.append(chunk.subarray(start));
        return;
      }
      this.append(chunk.subarray(start, nl));
      const dropped = this.overflowing;
      const line = Buffer.concat(this.parts).toString('utf8');
      this.parts = [];
      this.size = 0;
      this.overflowing = false;
      if (!dropped && line.trim() !== '') this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
      start = nl + 1;
    }
  }

  private append(b: Buffer): void {
    if (b.length === 0 || this.overflowing) return;
    if (this.size + b.length > this.maxBytes) {
      this.overflowing = true;
      this.parts = [];
      this.size = 0;
      this.onOverflow();
      return;
    }
    this.parts.push(Buffer.from(b));
    this.size += b.length;
  }
}
