import { timestampNow } from '@bufbuild/protobuf/wkt';
import { type ErrorCode, KataError } from '../../../host/errors.js';
import { sleep } from '../../../host/retry.js';
import { Status } from '../../../shim/generated/containerd/api/types/task/task_pb.js';
import type { Task } from '../../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcError } from '../../../ttrpc/errors.js';
import type { ServiceImpl } from '../../../ttrpc/server.js';

/**
 * The containerd Task service with test behaviour, for the ttRPC tests (in process and in the
 * server process of task-server-maker.ts):
 *  - State echoes id/exec_id, and the request metadata as JSON in `bundle`;
 *  - Start with exec_id "delay:N" answers after N ms with pid N;
 *  - Wait blocks until Kill for the same id, and answers exit_status = the signal;
 *  - Pause waits for its AbortSignal and records why it fired (the deadline test);
 *  - Delete with id "E_..." throws that KataError, "status:N" a TtrpcError with gRPC code N,
 *    "plain" a plain Error;
 *  - Exec takes any payload (big requests); Stats answers an Any of `id` bytes (big answers).
 */
export function testTaskService(): { impl: ServiceImpl<typeof Task>; waiting(): number; aborts: unknown[] } {
  const waiters = new Map<string, ((signal: number) => void)[]>();
  const aborts: unknown[] = [];
  const impl: ServiceImpl<typeof Task> = {
    state: (req, ctx) => ({
      id: req.id,
      execId: req.execId,
      pid: 42,
      status: Status.RUNNING,
      bundle: JSON.stringify(Object.fromEntries(ctx.metadata)),
    }),
    start: async (req) => {
      const m = /^delay:(\d+)$/.exec(req.execId);
      const ms = m ? Number(m[1]) : 0;
      if (ms > 0) await sleep(ms);
      return { pid: ms };
    },
    wait: (req, ctx) =>
      new Promise((resolve, reject) => {
        const list = waiters.get(req.id) ?? [];
        list.push((signal) => resolve({ exitStatus: signal, exitedAt: timestampNow() }));
        waiters.set(req.id, list);
        ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
      }),
    kill: (req) => {
      for (const release of waiters.get(req.id) ?? []) release(req.signal);
      waiters.delete(req.id);
      return {};
    },
    connect: () => ({ shimPid: process.pid, taskPid: 1, version: 'test' }),
    pause: (_req, ctx) =>
      new Promise((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => {
          aborts.push(ctx.signal.reason);
          reject(ctx.signal.reason);
        });
      }),
    delete: (req) => {
      if (req.id.startsWith('E_')) throw new KataError(req.id as ErrorCode, `test failure ${req.id}`);
      const m = /^status:(\d+)$/.exec(req.id);
      if (m) throw new TtrpcError(Number(m[1]), `test status ${m[1]}`);
      if (req.id === 'plain') throw new Error('plain failure');
      return { pid: 1, exitStatus: 0 };
    },
    exec: () => undefined,
    stats: (req) => ({ stats: { typeUrl: 'test.Bytes', value: new Uint8Array(Number(req.id)) } }),
    shutdown: () => ({}),
  };
  return { impl, waiting: () => [...waiters.values()].reduce((n, l) => n + l.length, 0), aborts };
}
