/** Options shared by both transports, and their validation. */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";

import type { Handler, Handlers } from "./handlers.js";
import { stderrLogger } from "./log.js";
import type { Logger } from "./log.js";
import { isValidWorkerId } from "./messages.js";

/** Options of both {@link runWorker} and {@link serveStdio}. */
export interface WorkerOptions {
  /** Handlers by task type; the keys are the task types the worker supports. */
  readonly handlers: Handlers;
  /** The worker's id. Default: `ts-<hostname>-<8 hex digits>`, kept across reconnections. */
  readonly workerId?: string | undefined;
  /** How many tasks run at once; a dispatch beyond that is refused with `WORKER_SATURATED`. */
  readonly maxConcurrency?: number | undefined;
  /**
   * How many tasks of a type run at once, for the types that have a limit (each from 1
   * to `maxConcurrency`; every type must have a handler). Registered with the
   * dispatcher, which places tasks accordingly; a dispatch beyond a limit is refused
   * with `WORKER_SATURATED`. Default: no limit but `maxConcurrency`.
   */
  readonly maxConcurrencyByType?: { readonly [taskType: string]: number } | undefined;
  /**
   * How long a drain lets the tasks in flight finish before it cancels them, in
   * milliseconds. Default: `TRIO_PIPE_DRAIN_TIMEOUT_MS` from the environment, else 30 000.
   */
  readonly drainTimeoutMs?: number | undefined;
  /**
   * `runWorker` and `serveStdio` only: whether SIGTERM and SIGINT drain the worker
   * (a second one stops it at once) and set the process's exit status. Default `true`.
   */
  readonly handleSignals?: boolean | undefined;
  /** Milliseconds between heartbeats. */
  readonly heartbeatIntervalMs?: number | undefined;
  /** Where the worker logs. Default: {@link stderrLogger}. */
  readonly logger?: Logger | undefined;
  /** Aborting it stops the worker: handlers are aborted, nothing more is sent, and the call resolves. */
  readonly signal?: AbortSignal | undefined;
}

/** Validated options. */
export interface Settings {
  readonly handlers: ReadonlyMap<string, Handler>;
  readonly workerId: string;
  readonly maxConcurrency: number;
  readonly maxConcurrencyByType: ReadonlyMap<string, number>;
  readonly drainTimeoutMs: number;
  readonly handleSignals: boolean;
  readonly logger: Logger;
}

/** The drain timeout when neither the option nor the environment gives one. */
const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Node's timers fire at once for longer delays. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Validate what both transports take; throws `TypeError` or `RangeError`. */
export function settings(options: WorkerOptions, defaultConcurrency: number): Settings {
  const handlers = new Map(Object.entries(options.handlers ?? {}));
  if (handlers.size === 0) throw new TypeError("a worker needs at least one handler");
  for (const [taskType, handler] of handlers) {
    if (taskType === "" || typeof handler !== "function") {
      throw new TypeError(`bad handler for task type '${taskType}': expected a function`);
    }
  }
  const workerId = options.workerId ?? defaultWorkerId();
  if (!isValidWorkerId(workerId)) {
    throw new RangeError(
      `invalid worker id '${workerId}': expected 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit`,
    );
  }
  const maxConcurrency = options.maxConcurrency ?? defaultConcurrency;
  if (!Number.isSafeInteger(maxConcurrency) || maxConcurrency < 1) {
    throw new RangeError(`maxConcurrency must be an integer >= 1, got ${maxConcurrency}`);
  }
  const handleSignals = options.handleSignals ?? true;
  if (typeof handleSignals !== "boolean") throw new TypeError("handleSignals must be a boolean");
  return {
    handlers,
    workerId,
    maxConcurrency,
    maxConcurrencyByType: limitsByType(options.maxConcurrencyByType ?? {}, handlers, maxConcurrency),
    drainTimeoutMs: drainTimeout(options.drainTimeoutMs),
    handleSignals,
    logger: options.logger ?? stderrLogger(),
  };
}

function limitsByType(
  given: { readonly [taskType: string]: number },
  handlers: ReadonlyMap<string, Handler>,
  maxConcurrency: number,
): ReadonlyMap<string, number> {
  const limits = new Map(Object.entries(given));
  for (const [taskType, limit] of limits) {
    if (!handlers.has(taskType)) {
      throw new TypeError(`maxConcurrencyByType names task type '${taskType}', which has no handler`);
    }
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > maxConcurrency) {
      const range = `an integer from 1 to maxConcurrency (${maxConcurrency})`;
      throw new RangeError(`maxConcurrencyByType['${taskType}'] must be ${range}, got ${limit}`);
    }
  }
  return limits;
}

/** The option, else `TRIO_PIPE_DRAIN_TIMEOUT_MS`, else the default; throws `RangeError` for a bad value. */
function drainTimeout(option: number | undefined): number {
  if (option !== undefined) return checkDrainTimeout(option);
  const variable = process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"]?.trim();
  if (variable === undefined || variable === "") return DEFAULT_DRAIN_TIMEOUT_MS;
  const value = Number(variable);
  if (!isDrainTimeout(value)) {
    const range = `milliseconds from 0 to ${MAX_TIMER_MS}`;
    throw new RangeError(`TRIO_PIPE_DRAIN_TIMEOUT_MS must be ${range}, got '${variable}'`);
  }
  return value;
}

/** Throws `RangeError` unless `value` is a drain timeout: milliseconds that a timer can wait. */
export function checkDrainTimeout(value: number): number {
  if (!isDrainTimeout(value)) {
    throw new RangeError(`drainTimeoutMs must be milliseconds from 0 to ${MAX_TIMER_MS}, got ${value}`);
  }
  return value;
}

function isDrainTimeout(value: number): boolean {
  return typeof value === "number" && value >= 0 && value <= MAX_TIMER_MS;
}

/** Throws `RangeError` unless `value` is a positive finite number of milliseconds. */
export function checkPositive(name: string, value: number): number {
  if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`${name} must be > 0 ms, got ${value}`);
  return value;
}

/** A fresh valid worker id, `ts-<hostname>-<8 hex digits>`. */
export function defaultWorkerId(): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+|[-.]+$/g, "").slice(0, 64) || "host";
  return `ts-${host}-${randomBytes(4).toString("hex")}`;
}
