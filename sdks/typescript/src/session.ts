/**
 * One connection's worth of serving, independent of the transport: the transport
 * feeds frames in ({@link Session.receive}) and says when it ends; the session runs
 * handlers, enforces the concurrency limits and deadlines, drains, and writes
 * results, progress reports, heartbeats and backpressure through a {@link Link}.
 */

import { decode, encode, ProtocolError } from "./codec.js";
import type { ProtocolErrorKind } from "./codec.js";
import type { Handler, TaskContext } from "./handlers.js";
import { TaskAbortedError, TaskFailure, errorMessage } from "./handlers.js";
import type { Logger } from "./log.js";
import { ErrorCode } from "./messages.js";
import type { Json, Message, Task, TaskError, TaskProgress, TaskStatus } from "./messages.js";

/** Where a session writes. */
export interface Link {
  /** Queue one encoded message. A failure is the transport's to report ({@link Session.lost}). */
  send(frame: string): void;
  /** Resolves once everything sent so far is written out, or the link has failed. */
  drained(): Promise<void>;
}

export interface SessionConfig {
  readonly workerId: string;
  readonly handlers: ReadonlyMap<string, Handler>;
  readonly maxConcurrency: number;
  /** Limits per task type, each at most `maxConcurrency`. */
  readonly maxConcurrencyByType: ReadonlyMap<string, number>;
  /** Milliseconds between heartbeats; `null` sends none. */
  readonly heartbeatIntervalMs: number | null;
  /** Bounds the final flush after `Shutdown` or a drain. */
  readonly flushTimeoutMs: number;
  /** `performance.now()` when the worker started: heartbeats' uptime counts from it. */
  readonly startedAt: number;
  /** On stdio, lines that are not JSON objects with a `type` are the peer's log, not errors. */
  readonly linesMayBeLog: boolean;
  readonly logger: Logger;
  /** Called on each `HeartbeatAck` and `WorkerRegistered`: the dispatcher answers. */
  readonly onAnswer?: (() => void) | undefined;
}

/** How a session ended. */
export interface SessionEnd {
  /** The connection was lost before any `Shutdown`: worth reconnecting. */
  readonly lost: boolean;
  readonly reason: string;
}

interface Running {
  readonly task: Task;
  readonly receivedAt: number;
  readonly controller: AbortController;
  /** When the worker's own clock times the task out (`performance.now()`); `extendDeadline` moves it. */
  deadline: number;
  /** Fires at `deadline`; none beyond the reach of Node's timers. */
  timer: NodeJS.Timeout | undefined;
}

/** How a task ended, as reported. */
interface Outcome {
  readonly status: TaskStatus;
  readonly payload?: unknown;
  readonly error?: TaskError;
}

/** setTimeout fires at once for delays above this; longer deadlines are not enforced. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Rejections that mean "not a message at all": on stdio, such a line is log output. */
const NOT_A_MESSAGE: ReadonlySet<ProtocolErrorKind> = new Set(["not JSON", "not an object", "missing type"]);

export class Session {
  /** Resolves once the session is over; never rejects. */
  readonly ended: Promise<SessionEnd>;

  private readonly active = new Map<string, Running>();
  /** How many of the active tasks are of each type. */
  private readonly activeByType = new Map<string, number>();
  private readonly heartbeats: NodeJS.Timeout | undefined;
  private resolveEnded!: (end: SessionEnd) => void;
  private throttled = false;
  /** No new task; end once the tasks in flight are reported (`Shutdown`, or a drain). */
  private shuttingDown = false;
  /** Why, once shutting down. */
  private stopReason = "";
  /** When a drain cancels the tasks still running (`performance.now()`); `undefined` unless draining. */
  private drainDeadline: number | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private over = false;

  constructor(
    private readonly link: Link,
    private readonly config: SessionConfig,
  ) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    const interval = config.heartbeatIntervalMs;
    this.heartbeats = interval === null ? undefined : setInterval(() => this.heartbeat(), interval);
  }

  /** Handle one frame (a WebSocket message, a stdin line) from the dispatcher. */
  receive(frame: string): void {
    if (this.over) return;
    const receivedAt = performance.now();
    let message: Message;
    try {
      message = decode(frame);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      if (this.config.linesMayBeLog && NOT_A_MESSAGE.has(error.kind)) {
        if (frame.trim() !== "") {
          this.config.logger.debug(`ignoring a line that is not a message: ${frame.slice(0, 80)}`);
        }
      } else {
        this.config.logger.warn(`ignoring a malformed message from the dispatcher: ${error.message}`);
      }
      return;
    }
    switch (message.type) {
      case "TaskDispatch":
        return this.onDispatch(message.task, receivedAt);
      case "Kill":
        return this.onKill(message.taskId, message.reason);
      case "Shutdown":
        return this.onShutdown(message.graceful);
      case "HeartbeatAck":
      case "WorkerRegistered":
        return this.config.onAnswer?.();
      default:
        this.config.logger.debug(`ignoring ${message.type}: not a dispatcher message`);
    }
  }

  /**
   * No more input will come (stdin closed). After `Shutdown` the session goes on
   * draining; before, it is a lost connection.
   */
  inputClosed(reason: string): void {
    if (!this.shuttingDown) this.lost(reason);
  }

  /** The connection is gone: abort every handler, report nothing. */
  lost(reason: string): void {
    this.abandon("disconnect", reason);
    this.end({ lost: !this.shuttingDown, reason });
  }

  /** Stop on the worker's own account: abort every handler, report nothing. */
  stop(reason: string): void {
    this.abandon("stop", reason);
    this.end({ lost: false, reason });
  }

  /**
   * Drain: tell the dispatcher (`Backpressure`, `draining: true`, once), take no new
   * task, report the tasks in flight as they finish, and at `deadline` (a
   * `performance.now()` time) cancel those still running; then end, once the results
   * are flushed. A later call can bring the deadline closer, never push it back.
   */
  drain(deadline: number): void {
    if (this.over || (this.drainDeadline !== undefined && deadline >= this.drainDeadline)) return;
    const delay = Math.max(0, deadline - performance.now());
    if (this.drainDeadline === undefined) {
      this.config.logger.debug(`draining: ${this.active.size} tasks in flight, ${Math.round(delay)} ms to finish`);
      this.shutDown("drained");
      const currentLoad = this.active.size / this.config.maxConcurrency;
      const signal = { workerId: this.config.workerId, currentLoad, shouldThrottle: true, draining: true } as const;
      this.link.send(encode({ type: "Backpressure", signal }));
    }
    this.drainDeadline = deadline;
    clearTimeout(this.drainTimer);
    this.drainTimer = setTimeout(() => this.drainTimedOut(), delay);
    this.endIfDrained();
  }

  // -- messages ---------------------------------------------------------------

  private onDispatch(task: Task, receivedAt: number): void {
    if (this.active.has(task.id)) {
      this.config.logger.warn(`ignoring a second dispatch of running task ${task.id}`);
      return;
    }
    const { taskType } = task;
    const handler = this.config.handlers.get(taskType);
    const ofType = this.activeByType.get(taskType) ?? 0;
    const typeLimit = this.config.maxConcurrencyByType.get(taskType) ?? Infinity;
    if (this.shuttingDown) {
      this.reject(task, ErrorCode.WORKER_SHUTTING_DOWN, "the worker is shutting down", true);
    } else if (handler === undefined) {
      this.reject(task, ErrorCode.UNKNOWN_TASK_TYPE, `no handler for task type '${taskType}'`, false);
    } else if (this.active.size >= this.config.maxConcurrency) {
      const message = `the worker is running ${this.active.size} tasks, its maximum`;
      this.reject(task, ErrorCode.WORKER_SATURATED, message, true);
    } else if (ofType >= typeLimit) {
      const message = `the worker is running ${ofType} '${taskType}' tasks, its maximum for that type`;
      this.reject(task, ErrorCode.WORKER_SATURATED, message, true);
    } else {
      this.start(task, handler, receivedAt);
    }
  }

  private onKill(taskId: string, reason: string): void {
    const running = this.active.get(taskId);
    if (running === undefined) {
      this.config.logger.debug(`ignoring Kill for task ${taskId}: not running`);
      return;
    }
    const message = reason || "killed by the dispatcher";
    this.abort(running, "kill", { status: "Cancelled", error: taskError(ErrorCode.KILLED, message, false) });
  }

  private onShutdown(graceful: boolean): void {
    this.shutDown("shut down by the dispatcher");
    const how = graceful ? "a graceful" : "an immediate";
    this.config.logger.info(`the dispatcher requested ${how} shutdown; ${this.active.size} tasks in flight`);
    if (!graceful) this.cancelAll("the worker was shut down (not gracefully)");
    this.endIfDrained();
  }

  private drainTimedOut(): void {
    this.config.logger.warn(`the drain is over: cancelling ${this.active.size} tasks still running`);
    this.cancelAll("the worker is shutting down: its drain ended before the task did");
  }

  private shutDown(reason: string): void {
    if (!this.shuttingDown) this.stopReason = reason;
    this.shuttingDown = true;
  }

  /** Abort every task in flight, reporting each `Cancelled` / `WORKER_SHUTTING_DOWN` (retryable). */
  private cancelAll(message: string): void {
    const error = taskError(ErrorCode.WORKER_SHUTTING_DOWN, message, true);
    for (const running of [...this.active.values()]) this.abort(running, "shutdown", { status: "Cancelled", error });
  }

  // -- tasks ------------------------------------------------------------------

  private start(task: Task, handler: Handler, receivedAt: number): void {
    const deadline = receivedAt + task.metadata.timeoutMs;
    const running: Running = { task, receivedAt, controller: new AbortController(), deadline, timer: undefined };
    this.schedule(running);
    this.active.set(task.id, running);
    this.countActive(task.taskType, +1);
    this.updateBackpressure();
    void this.run(running, handler);
  }

  /** (Re)arm the task's timer for its deadline. */
  private schedule(running: Running): void {
    clearTimeout(running.timer);
    const delay = Math.max(0, running.deadline - performance.now());
    running.timer = delay <= MAX_TIMER_MS ? setTimeout(() => this.timeOut(running.task.id), delay) : undefined;
  }

  private countActive(taskType: string, delta: number): void {
    const count = (this.activeByType.get(taskType) ?? 0) + delta;
    if (count > 0) this.activeByType.set(taskType, count);
    else this.activeByType.delete(taskType);
  }

  private async run(running: Running, handler: Handler): Promise<void> {
    const { task, controller } = running;
    const ctx: TaskContext = {
      signal: controller.signal,
      task,
      workerId: this.config.workerId,
      progress: (fraction, message = null) => this.report(running, { progress: progressOf(fraction, message) }),
      extendDeadline: (ms) => this.extend(running, ms),
    };
    let outcome: Outcome;
    try {
      outcome = { status: "Completed", payload: await handler(task.payload, ctx) };
    } catch (error) {
      if (this.active.get(task.id) !== running) return; // reported already: its error is the abort's echo
      outcome = this.failure(task, error);
    }
    this.finish(running, outcome);
  }

  /** Send a `Running` report for the task, unless its result is reported already. */
  private report(running: Running, extension: { progress: TaskProgress } | { extendMs: number }): boolean {
    const { task, receivedAt } = running;
    if (this.active.get(task.id) !== running) return false;
    const durationMs = Math.max(0, Math.round(performance.now() - receivedAt));
    const result = { taskId: task.id, status: "Running", payload: null, error: null, durationMs } as const;
    this.link.send(encode({ type: "TaskResult", result: { ...result, workerId: this.config.workerId, ...extension } }));
    return true;
  }

  /** Ask the dispatcher for `ms` more, and move the task's own deadline to now + `ms` if that is later. */
  private extend(running: Running, ms: number): void {
    if (!(Number.isSafeInteger(ms) && ms >= 1)) {
      throw new RangeError(`extendDeadline takes an integer number of milliseconds >= 1, got ${ms}`);
    }
    if (!this.report(running, { extendMs: ms })) return;
    const deadline = performance.now() + ms;
    if (deadline <= running.deadline) return;
    running.deadline = deadline;
    this.schedule(running);
  }

  private timeOut(taskId: string): void {
    const running = this.active.get(taskId);
    if (running === undefined) return;
    const { timeoutMs } = running.task.metadata;
    const allowed = Math.round(running.deadline - running.receivedAt);
    const message =
      allowed > timeoutMs
        ? `task exceeded its deadline, extended to ${allowed} ms after receipt (timeoutMs ${timeoutMs})`
        : `task exceeded its timeout of ${timeoutMs} ms`;
    this.abort(running, "timeout", { status: "TimedOut", error: taskError(ErrorCode.TIMEOUT, message, true) });
  }

  /** Abort the handler's signal and report `outcome` now, without waiting for the handler. */
  private abort(running: Running, kind: "kill" | "timeout" | "shutdown", outcome: Outcome): void {
    running.controller.abort(new TaskAbortedError(kind, outcome.error?.message ?? kind));
    this.finish(running, outcome);
  }

  /** Abort every handler without reporting: their results could not be delivered. */
  private abandon(kind: "disconnect" | "stop", reason: string): void {
    const running = [...this.active.values()];
    this.active.clear();
    this.activeByType.clear();
    for (const { controller, timer } of running) {
      clearTimeout(timer);
      controller.abort(new TaskAbortedError(kind, reason));
    }
  }

  /** Report a task's outcome, unless it was reported (killed, timed out) or abandoned already. */
  private finish(running: Running, outcome: Outcome): void {
    const { task } = running;
    if (this.active.get(task.id) !== running) return;
    clearTimeout(running.timer);
    this.active.delete(task.id);
    this.countActive(task.taskType, -1);
    const durationMs = Math.max(0, Math.round(performance.now() - running.receivedAt));
    this.link.send(this.resultFrame(task, outcome, durationMs));
    this.updateBackpressure();
    this.endIfDrained();
  }

  private failure(task: Task, error: unknown): Outcome {
    const what = `task ${task.id} (${task.taskType})`;
    if (error instanceof TaskFailure) {
      this.config.logger.info(`${what} failed: ${error.code}: ${error.message}`);
      return { status: "Failed", error: taskError(error.code, error.message, error.retryable) };
    }
    const details = error instanceof Error && error.stack !== undefined ? error.stack : errorMessage(error);
    this.config.logger.warn(`${what} threw: ${details}`);
    return { status: "Failed", error: taskError(ErrorCode.HANDLER_ERROR, errorMessage(error), true) };
  }

  private reject(task: Task, code: string, message: string, retryable: boolean): void {
    this.config.logger.info(`rejecting task ${task.id} (${task.taskType}): ${code}`);
    this.link.send(this.resultFrame(task, { status: "Failed", error: taskError(code, message, retryable) }, 0));
  }

  private resultFrame(task: Task, outcome: Outcome, durationMs: number): string {
    const frame = ({ status, payload, error }: Outcome): string => {
      const result = { taskId: task.id, status, payload: payload as Json, error: error ?? null };
      return encode({ type: "TaskResult", result: { ...result, durationMs, workerId: this.config.workerId } });
    };
    try {
      return frame(outcome);
    } catch (error) {
      this.config.logger.warn(`task ${task.id} (${task.taskType}) returned a result that is not JSON`);
      const message = `result payload is not JSON: ${errorMessage(error)}`;
      return frame({ status: "Failed", error: taskError(ErrorCode.PARSE_ERROR, message, false) });
    }
  }

  // -- the rest -----------------------------------------------------------------

  /** Send `Backpressure` when the worker has just filled up, or has a free slot again; never while draining. */
  private updateBackpressure(): void {
    const full = this.active.size >= this.config.maxConcurrency;
    if (full === this.throttled || this.over || this.drainDeadline !== undefined) return;
    this.throttled = full;
    const currentLoad = this.active.size / this.config.maxConcurrency;
    this.link.send(
      encode({ type: "Backpressure", signal: { workerId: this.config.workerId, currentLoad, shouldThrottle: full } }),
    );
  }

  /** Send a heartbeat now (it also goes every `heartbeatIntervalMs`). */
  heartbeat(): void {
    const payload = {
      workerId: this.config.workerId,
      activeTasks: this.active.size,
      capacity: this.config.maxConcurrency,
      uptimeSeconds: Math.floor((performance.now() - this.config.startedAt) / 1000),
    };
    this.link.send(encode({ type: "Heartbeat", payload }));
  }

  /** After `Shutdown` or during a drain, once every task is reported: end, once the results are flushed. */
  private endIfDrained(): void {
    if (!this.shuttingDown || this.active.size > 0 || !this.close()) return;
    const { flushTimeoutMs, logger } = this.config;
    void withTimeout(this.link.drained(), flushTimeoutMs).then((flushed) => {
      if (!flushed) logger.warn(`could not flush results within ${flushTimeoutMs} ms of shutdown`);
      this.resolveEnded({ lost: false, reason: this.stopReason });
    });
  }

  private end(end: SessionEnd): void {
    if (this.close()) this.resolveEnded(end);
  }

  /** Stop taking input and sending heartbeats; false if that was done already. */
  private close(): boolean {
    if (this.over) return false;
    this.over = true;
    clearInterval(this.heartbeats);
    clearTimeout(this.drainTimer);
    return true;
  }
}

function taskError(code: string, message: string, retryable: boolean): TaskError {
  return { code, message, retryable };
}

/** A handler's progress report; throws `RangeError` / `TypeError` for values the protocol has no room for. */
function progressOf(fraction: number | null, message: string | null): TaskProgress {
  if (fraction !== null && !(typeof fraction === "number" && fraction >= 0 && fraction <= 1)) {
    throw new RangeError(`progress takes a fraction from 0 to 1, or null; got ${fraction}`);
  }
  if (message !== null && typeof message !== "string") throw new TypeError("a progress message must be a string");
  return { fraction, message };
}

/** Whether `promise` settled within `ms`. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
