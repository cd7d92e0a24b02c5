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
  readonly logger: Logger;
}

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
  return { handlers, workerId, maxConcurrency, logger: options.logger ?? stderrLogger() };
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
