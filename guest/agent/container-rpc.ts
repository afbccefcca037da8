/**
 * The container and process methods of the agent: parameter checks and the wire encoding (bytes as
 * base64), on top of Containers. Calls that write stdin do so before their first await, so writes
 * and CloseStdin reach the pipe in the order their lines arrived.
 */
import type { Containers } from './containers.js';
import { AgentError, MAX_READ_BYTES, MAX_WRITE_BYTES, type AgentMethod, type CreateContainerParams } from './protocol.js';
import { WireBytes } from './wire-bytes.js';

type Handler = (params: Record<string, unknown>) => Promise<unknown>;

function str(p: Record<string, unknown>, key: string, method: string, optional = false): string {
  const v = p[key];
  if (v === undefined && optional) return '';
  if (typeof v !== 'string') throw new AgentError('E_INVALID_ARGUMENT', `${method} needs params.${key} (a string)`);
  return v;
}

function uint(p: Record<string, unknown>, key: string, method: string, dflt?: number): number {
  const v = p[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    throw new AgentError('E_INVALID_ARGUMENT', `${method} needs params.${key} (a non-negative integer)`);
  return v;
}

function ref(p: Record<string, unknown>, method: string): [string, string] {
  return [str(p, 'container_id', method, true), str(p, 'exec_id', method, true)];
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Handlers for the container methods, keyed by method name. */
export function containerHandlers(c: Containers): Partial<Record<AgentMethod, Handler>> {
  const read = (which: 'stdout' | 'stderr', method: string) => async (p: Record<string, unknown>) => {
    const [cid, eid] = ref(p, method);
    const len = Math.min(uint(p, 'len', method, MAX_READ_BYTES), MAX_READ_BYTES) || MAX_READ_BYTES;
    return { data: new WireBytes(await c.process(cid, eid).stream(which).read(len)) };
  };
  return {
    CreateContainer: async (p) => c.create(p as unknown as CreateContainerParams),
    StartContainer: async (p) => {
      await c.start(str(p, 'container_id', 'StartContainer'));
      return {};
    },
    ExecProcess: async (p) => c.exec(str(p, 'container_id', 'ExecProcess', true), str(p, 'exec_id', 'ExecProcess'), p.process),
    SignalProcess: async (p) => {
      const [cid, eid] = ref(p, 'SignalProcess');
      await c.signal(cid, eid, uint(p, 'signal', 'SignalProcess'));
      return {};
    },
    WaitProcess: async (p) => {
      const [cid, eid] = ref(p, 'WaitProcess');
      return { status: await c.process(cid, eid).wait() };
    },
    WriteStdin: (p) => {
      const [cid, eid] = ref(p, 'WriteStdin');
      const data = str(p, 'data', 'WriteStdin', true);
      if (!BASE64.test(data)) throw new AgentError('E_INVALID_ARGUMENT', 'WriteStdin data must be base64');
      const buf = Buffer.from(data, 'base64');
      if (buf.length > MAX_WRITE_BYTES) throw new AgentError('E_INVALID_ARGUMENT', `WriteStdin carries at most ${MAX_WRITE_BYTES} bytes`);
      const stdin = c.process(cid, eid).mon.stdin;
      // Kata's agent (kata-containers#9534): a zero-length write closes stdin.
      if (buf.length === 0) return stdin.close().then(() => ({ len: 0 }));
      return stdin.write(buf).then((len) => ({ len }));
    },
    ReadStdout: read('stdout', 'ReadStdout'),
    ReadStderr: read('stderr', 'ReadStderr'),
    CloseStdin: (p) => {
      const [cid, eid] = ref(p, 'CloseStdin');
      return c
        .process(cid, eid)
        .mon.stdin.close()
        .then(() => ({}));
    },
    TtyWinResize: async (p) => {
      const [cid, eid] = ref(p, 'TtyWinResize');
      c.resize(cid, eid, uint(p, 'row', 'TtyWinResize'), uint(p, 'column', 'TtyWinResize'));
      return {};
    },
    RemoveContainer: async (p) => {
      await c.remove(str(p, 'container_id', 'RemoveContainer'), uint(p, 'timeout', 'RemoveContainer', 0));
      return {};
    },
    ListContainers: async () => c.list(),
  };
}
