/**
 * The task events a shim publishes and their topics (containerd v1.6.20 runtime/events.go;
 * compliance table in runtime/v2/README.md). The Any type URL of each is its bare full proto
 * name, e.g. "containerd.events.TaskExit".
 */
import {
  TaskCheckpointedSchema,
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExecAddedSchema,
  TaskExecStartedSchema,
  TaskExitSchema,
  TaskOOMSchema,
  TaskPausedSchema,
  TaskResumedSchema,
  TaskStartSchema,
} from '../generated/containerd/api/events/task_pb.js';

export type TaskEventSchema =
  | typeof TaskCreateSchema
  | typeof TaskStartSchema
  | typeof TaskDeleteSchema
  | typeof TaskExitSchema
  | typeof TaskOOMSchema
  | typeof TaskExecAddedSchema
  | typeof TaskExecStartedSchema
  | typeof TaskPausedSchema
  | typeof TaskResumedSchema
  | typeof TaskCheckpointedSchema;

const TOPICS: Record<TaskEventSchema['typeName'], string> = {
  [TaskCreateSchema.typeName]: '/tasks/create',
  [TaskStartSchema.typeName]: '/tasks/start',
  [TaskDeleteSchema.typeName]: '/tasks/delete',
  [TaskExitSchema.typeName]: '/tasks/exit',
  [TaskOOMSchema.typeName]: '/tasks/oom',
  [TaskExecAddedSchema.typeName]: '/tasks/exec-added',
  [TaskExecStartedSchema.typeName]: '/tasks/exec-started',
  [TaskPausedSchema.typeName]: '/tasks/paused',
  [TaskResumedSchema.typeName]: '/tasks/resumed',
  [TaskCheckpointedSchema.typeName]: '/tasks/checkpointed',
};

export function topicOf(schema: TaskEventSchema): string {
  return TOPICS[schema.typeName];
}
