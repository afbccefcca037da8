/**
 * The task events of a shim, as one typed object over the ordered publisher: each call queues the
 * event in order (the publisher delivers in that order, so an exit never overtakes its start).
 */
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import {
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExecAddedSchema,
  TaskExecStartedSchema,
  TaskExitSchema,
  TaskStartSchema,
} from '../generated/containerd/api/events/task_pb.js';
import type { EventPublisher } from './publisher.js';

export interface ShimEvents {
  created(
    req: {
      id: string;
      bundle: string;
      rootfs: { type: string; source: string; options: string[] }[];
      stdin: string;
      stdout: string;
      stderr: string;
      terminal: boolean;
    },
    pid: number,
  ): void;
  started(containerId: string, pid: number): void;
  execAdded(containerId: string, execId: string): void;
  execStarted(containerId: string, execId: string, pid: number): void;
  exited(containerId: string, id: string, pid: number, exit: { status: number; at: Date }): void;
  deleted(containerId: string, pid: number, exit: { status: number; at: Date }): void;
  close(): Promise<void>;
}

export function shimEvents(pub: EventPublisher): ShimEvents {
  return {
    created: (r, pid) =>
      void pub.publish(TaskCreateSchema, {
        containerId: r.id,
        bundle: r.bundle,
        rootfs: r.rootfs,
        io: { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal },
        pid,
      }),
    started: (containerId, pid) => void pub.publish(TaskStartSchema, { containerId, pid }),
    execAdded: (containerId, execId) => void pub.publish(TaskExecAddedSchema, { containerId, execId }),
    execStarted: (containerId, execId, pid) => void pub.publish(TaskExecStartedSchema, { containerId, execId, pid }),
    exited: (containerId, id, pid, e) =>
      void pub.publish(TaskExitSchema, { containerId, id, pid, exitStatus: e.status, exitedAt: timestampFromDate(e.at) }),
    deleted: (containerId, pid, e) =>
      void pub.publish(TaskDeleteSchema, { containerId, id: containerId, pid, exitStatus: e.status, exitedAt: timestampFromDate(e.at) }),
    close: () => pub.close(),
  };
}
