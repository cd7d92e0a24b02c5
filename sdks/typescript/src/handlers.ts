/** What a worker serves: handlers by task type, and the errors they can throw. */

import { ErrorCode } from "./messages.js";
import type { Task } from "./messages.js";

/** What a handler is told besides its payload. */
export interface TaskContext {
  /**
   * Aborts when the task must stop: `Kill` from the dispatcher, its `timeoutMs`
   * ran out, a non-graceful `Shutdown`, the drain timeout ran out, the connection
   * was lost, or the worker was stopped through its own `signal`. `signal.reason`
   * is a {@link TaskAbortedError}.
   * Pass it on (`fetch(url, { signal })`, `setTimeout(ms, v, { signal })` from
   * `node:timers/promises`) or check it between steps. The task's result is
   * reported as soon as it aborts; whatever the handler returns afterwards is dropped.
   */
  readonly signal: AbortSignal;
  /** The task as dispatched: id, type, raw payload and metadata (traceId, retryCount, ...). */
  readonly task: Task;
  /** The id this worker labels its messages with. */
  readonly workerId: string;
  /**
   * Report how far the task has got: a `Running` result with `progress`, which the
   * dispatcher surfaces in order. `fraction` is from 0 to 1, or `null` when the
   * handler cannot tell (`RangeError` otherwise). Does nothing once the task's
   * result has been reported (its signal aborted).
   */
  progress(fraction: number | null, message?: string | null): void;
  /**
   * Ask for more time: a `Running` result with `extendMs`, "let my deadline be now +
   * `ms`". The worker's own `timeoutMs` clock for the task moves to now + `ms` at
   * once (never earlier than it was); the dispatcher grants it only if the task's
   * type allows it, and otherwise its `Kill` at the old deadline stops the task.
   * `ms` is an integer >= 1 (`RangeError` otherwise). Does nothing once the task's
   * result has been reported.
   */
  extendDeadline(ms: number): void;
}

/**
 * A handler: the task's payload in, its JSON-serialisable result out (or a
 * promise of it; `undefined` is sent as `null`).
 *
 * The payload is typed `unknown` unless you annotate it; an annotation is a
 * promise you make about what the dispatcher sends, not a check. To check it,
 * wrap the handler with {@link defineHandler} and a parser.
 */
// A method signature, so that a handler with an annotated payload type fits the
// `Handlers` record (method parameters are bivariant), while an unannotated one sees `unknown`.
export type Handler<In = unknown, Out = unknown> = {
  handle(payload: In, ctx: TaskContext): Out | Promise<Out>;
}["handle"];

/** Handlers by task type. The keys are the `supportedTasks` the worker registers. */
export type Handlers = { readonly [taskType: string]: Handler };

/** Turns the raw payload into the handler's input, or throws saying why it cannot. */
export type PayloadParser<In> = (payload: unknown) => In;

/**
 * A handler whose payload is checked by `parse` before `handle` runs. If `parse`
 * throws, the task fails with `PARSE_ERROR` (not retryable) and the error's
 * message; `handle` is not called. A {@link TaskFailure} thrown by `parse` is
 * reported as it is.
 *
 * ```ts
 * const resize = defineHandler(parseResize, async ({ url, width }, { signal }) => { ... });
 * ```
 */
export function defineHandler<In, Out>(parse: PayloadParser<In>, handle: Handler<In, Out>): Handler<unknown, Out> {
  return (payload, ctx) => {
    let input: In;
    try {
      input = parse(payload);
    } catch (error) {
      if (error instanceof TaskFailure) throw error;
      throw new TaskFailure(ErrorCode.PARSE_ERROR, `invalid payload: ${errorMessage(error)}`, { retryable: false });
    }
    return handle(input, ctx);
  };
}

/**
 * Throw from a handler to fail the task with a code of your choosing. Any other
 * error fails it with `HANDLER_ERROR` (retryable) and the error's message.
 *
 * ```ts
 * throw new TaskFailure("BAD_INPUT", "url must be absolute", { retryable: false });
 * ```
 */
export class TaskFailure extends Error {
  override readonly name = "TaskFailure";
  /** Whether the dispatcher may try the task again, possibly elsewhere. Default `false`. */
  readonly retryable: boolean;

  constructor(
    readonly code: string,
    message: string,
    options: { retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }
}

/** Why a task's signal aborted. */
export type AbortKind =
  /** The dispatcher sent `Kill`: reported `Cancelled`, code `KILLED`. */
  | "kill"
  /** `timeoutMs` ran out: reported `TimedOut`, code `TIMEOUT`. */
  | "timeout"
  /**
   * A non-graceful `Shutdown`, or a drain whose timeout ran out (or that a second
   * signal cut short): reported `Cancelled`, code `WORKER_SHUTTING_DOWN`, retryable.
   */
  | "shutdown"
  /** The connection was lost: nothing can be reported; the dispatcher retries the task. */
  | "disconnect"
  /** The worker's own `signal` aborted: nothing is reported; the dispatcher retries the task. */
  | "stop";

/** The `reason` of a task's aborted {@link TaskContext.signal}. */
export class TaskAbortedError extends Error {
  override readonly name = "TaskAbortedError";

  constructor(
    readonly kind: AbortKind,
    message: string,
  ) {
    super(message);
  }
}

/** `Name: message` for an Error, the text of anything else. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message ? `${error.name}: ${error.message}` : error.name;
  return String(error);
}
