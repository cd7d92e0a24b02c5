/**
 * The nine messages of the trio_pipe wire protocol and the values they carry,
 * as plain data (docs/protocol.md). Field names are the wire names.
 */

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [member: string]: Json };

/** Scheduling priority, lowest first. */
export type Priority = "Low" | "Normal" | "High" | "Critical";

/** Where a task is in its life. The last four are terminal. */
export type TaskStatus =
  | "Pending"
  | "Dispatched"
  | "Running"
  | "Completed"
  | "Failed"
  | "TimedOut"
  | "Cancelled";

export interface TaskMetadata {
  /** RFC 3339, UTC, canonical form: `2025-03-14T09:26:53Z`, or with six fraction digits. */
  readonly createdAt: string;
  /** The time the worker has for this try, counted from receipt of the dispatch. */
  readonly timeoutMs: number;
  readonly priority: Priority;
  /** 0 on the first try, 1 on the first retry, ... */
  readonly retryCount: number;
  readonly maxRetries: number;
  readonly traceId: string | null;
  /**
   * The submitter's key for the task: the dispatcher keeps one task per key, so a
   * repeated submission is the same task. Pass it to the systems the handler
   * writes to, to make its side effects idempotent. Absent when the task has none.
   */
  readonly idempotencyKey?: string;
  /**
   * Which try of the task this dispatch is (>= 1), counted over the task's whole
   * life: across retries and dispatcher restarts, unlike `retryCount`. With `epoch`,
   * the fencing token of this try. Absent when the dispatcher sends none.
   */
  readonly attempt?: number;
  /**
   * The dispatcher's epoch (>= 0), which grows each time a dispatcher opens its task
   * store. With `attempt`, the fencing token of this try: a system the handler writes
   * to can refuse a write from a superseded try. Absent when the dispatcher sends none.
   */
  readonly epoch?: number;
}

export interface Task {
  /** A lowercase hyphenated UUID, the same on every retry. */
  readonly id: string;
  readonly taskType: string;
  readonly payload: Json;
  readonly metadata: TaskMetadata;
}

export interface TaskError {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}

export interface TaskResult {
  readonly taskId: string;
  readonly status: TaskStatus;
  readonly payload: Json;
  readonly error: TaskError | null;
  readonly durationMs: number;
  readonly workerId: string;
  /** Only in a `Running` report: how far the task has got. Absent when it says nothing. */
  readonly progress?: TaskProgress;
  /** Only in a `Running` report: "let my deadline be now + extendMs" (>= 1). Absent when not asked. */
  readonly extendMs?: number;
}

/** What a `Running` report says about a task's progress. */
export interface TaskProgress {
  /** From 0 to 1, or `null` when the handler cannot tell. */
  readonly fraction: number | null;
  readonly message: string | null;
}

export interface WorkerRegistration {
  readonly workerId: string;
  readonly supportedTasks: readonly string[];
  readonly maxConcurrency: number;
  readonly language: string;
  readonly tags: readonly string[];
  /** Limits per task type (each >= 1, at most `maxConcurrency`). Absent when there are none. */
  readonly maxConcurrencyByType?: { readonly [taskType: string]: number };
}

export interface HeartbeatPayload {
  readonly workerId: string;
  readonly activeTasks: number;
  readonly capacity: number;
  readonly uptimeSeconds: number;
}

export interface BackpressureSignal {
  readonly workerId: string;
  readonly currentLoad: number;
  readonly shouldThrottle: boolean;
  /** Present, and `true`, only when the worker is draining: it takes no new task for the rest of the connection. */
  readonly draining?: true;
}

// Dispatcher to worker

export interface TaskDispatch {
  readonly type: "TaskDispatch";
  readonly task: Task;
}

export interface Kill {
  readonly type: "Kill";
  readonly taskId: string;
  readonly reason: string;
}

export interface Shutdown {
  readonly type: "Shutdown";
  readonly graceful: boolean;
}

export interface WorkerRegistered {
  readonly type: "WorkerRegistered";
  readonly workerId: string;
}

export interface HeartbeatAck {
  readonly type: "HeartbeatAck";
}

// Worker to dispatcher

export interface WorkerRegister {
  readonly type: "WorkerRegister";
  readonly registration: WorkerRegistration;
}

export interface Heartbeat {
  readonly type: "Heartbeat";
  readonly payload: HeartbeatPayload;
}

export interface TaskResultMessage {
  readonly type: "TaskResult";
  readonly result: TaskResult;
}

export interface Backpressure {
  readonly type: "Backpressure";
  readonly signal: BackpressureSignal;
}

export type DispatcherMessage = TaskDispatch | Kill | Shutdown | WorkerRegistered | HeartbeatAck;
export type WorkerMessage = WorkerRegister | Heartbeat | TaskResultMessage | Backpressure;
export type Message = DispatcherMessage | WorkerMessage;

/** The error codes with a meaning fixed by the protocol (docs/protocol.md, "Error codes"). */
export const ErrorCode = {
  UNKNOWN_TASK_TYPE: "UNKNOWN_TASK_TYPE",
  HANDLER_ERROR: "HANDLER_ERROR",
  PARSE_ERROR: "PARSE_ERROR",
  TIMEOUT: "TIMEOUT",
  KILLED: "KILLED",
  CANCELLED: "CANCELLED",
  WORKER_SATURATED: "WORKER_SATURATED",
  WORKER_SHUTTING_DOWN: "WORKER_SHUTTING_DOWN",
  WORKER_DISCONNECTED: "WORKER_DISCONNECTED",
  WORKER_REMOVED: "WORKER_REMOVED",
  DISPATCHER_CLOSED: "DISPATCHER_CLOSED",
  INVALID_PAYLOAD: "INVALID_PAYLOAD",
} as const;

const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Whether `id` is a valid worker id: 1-128 characters of `A-Z a-z 0-9 . _ -`, starting alphanumeric. */
export function isValidWorkerId(id: string): boolean {
  return WORKER_ID.test(id);
}
