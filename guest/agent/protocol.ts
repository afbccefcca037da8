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
 * Containers and processes (Kata's CreateContainer ... TtyWinResize): `OCI` is the OCI runtime spec
 * as config.json has it (not Kata's protobuf rendering of it); bytes (`data`) are base64, as
 * protobuf's JSON mapping has them. container_id "" in the process calls addresses a process in the
 * guest's root environment (started by ExecProcess with container_id ""), the streaming successor
 * of Exec. exec_id "" (or the container's own exec_id) means the container's init process.
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

/** OCI runtime spec `process` (config.json). Fields the agent does not look at pass through to runc. */
export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user?: { uid: number; gid: number; umask?: number; additionalGids?: number[] };
  args: string[];
  env?: string[];
  cwd: string;
  [key: string]: unknown;
}

/** OCI runtime spec (config.json); only the fields the agent rewrites are typed. */
export interface OciSpec {
  ociVersion?: string;
  process?: OciProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: { destination: string; type?: string; source?: string; options?: string[] }[];
  hooks?: unknown;
  annotations?: Record<string, string>;
  linux?: {
    namespaces?: { type: string; path?: string }[];
    cgroupsPath?: string;
    resources?: Record<string, unknown>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

interface ProcessRef {
  container_id: string;
  exec_id: string;
}

export interface CreateContainerParams {
  container_id: string;
  /** Kata sets it to container_id; the init process answers to it and to "". */
  exec_id?: string;
  /** Mounted first (as AddStorages), unmounted by RemoveContainer. */
  storages?: Storage[];
  OCI: OciSpec;
}

/** One process as ListContainers shows it. */
export interface ProcessInfo {
  exec_id: string;
  pid: number;
  terminal: boolean;
  /** null while it runs. */
  exit_status: number | null;
}

export interface ContainerInfo {
  container_id: string;
  status: 'created' | 'running' | 'stopped';
  bundle: string;
  init: ProcessInfo;
  execs: ProcessInfo[];
}

/** Every method: its params and its result. */
interface AgentMethods {
  /** grpc.health.v1-style health check of the Kata agent. */
  /**
   * early: kata-init's early agent answered (guest/init/early-agent.c); it serves Check and Exec
   * only, until node's agent takes over. sharefs: the share kata-init mounted (kata.sharefs= value).
   */
  Check: { params: Record<string, never>; result: { status: 'SERVING' | 'NOT_SERVING'; early?: boolean; sharefs?: string } };
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
  /** Mount the storages, write the bundle, `runc create`: the init waits for StartContainer. */
  CreateContainer: { params: CreateContainerParams; result: { pid: number } };
  StartContainer: { params: { container_id: string }; result: Record<string, never> };
  /** A process in a container (`runc exec`), or with container_id "" in the guest's root environment. */
  ExecProcess: { params: ProcessRef & { process: OciProcess }; result: { pid: number } };
  /** exec_id "": every process of the container (Kata). A process that already exited: no error. */
  SignalProcess: { params: ProcessRef & { signal: number }; result: Record<string, never> };
  /** Blocks until the process exited and its output is in the agent's buffers; 128+N for signal N. */
  WaitProcess: { params: ProcessRef; result: { status: number } };
  /** Returns once the data is in the process's stdin pipe; empty data closes stdin (Kata). */
  WriteStdin: { params: ProcessRef & { data: string }; result: { len: number } };
  /** Up to `len` bytes as soon as there are any; data "" is EOF. */
  ReadStdout: { params: ProcessRef & { len: number }; result: { data: string } };
  ReadStderr: { params: ProcessRef & { len: number }; result: { data: string } };
  /** Closes stdin once everything written before has reached the process. */
  CloseStdin: { params: ProcessRef; result: Record<string, never> };
  TtyWinResize: { params: ProcessRef & { row: number; column: number }; result: Record<string, never> };
  /** Kill what is left (timeout s, 0 = no limit), runc delete, unmount the rootfs bind and the storages. */
  RemoveContainer: { params: { container_id: string; timeout?: number }; result: Record<string, never> };
  ListContainers: { params: Record<string, never>; result: { containers: ContainerInfo[] } };
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
  'CreateContainer',
  'StartContainer',
  'ExecProcess',
  'SignalProcess',
  'WaitProcess',
  'WriteStdin',
  'ReadStdout',
  'ReadStderr',
  'CloseStdin',
  'TtyWinResize',
  'RemoveContainer',
  'ListContainers',
  'Shutdown',
];

/** Most bytes one ReadStdout/ReadStderr returns (base64 of it stays far below the line limit). */
export const MAX_READ_BYTES = 4 * 1024 * 1024;
/** Most bytes one WriteStdin carries. */
export const MAX_WRITE_BYTES = 4 * 1024 * 1024;

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
  E_NOT_FOUND: 'no container or process with that id',
  E_ALREADY_EXISTS: 'a container or process with that id exists already',
  E_FAILED_PRECONDITION: 'the container or process is not in a state that allows the call (e.g. stdin closed)',
  E_RUNC: "runc failed; the message carries runc's own",
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
