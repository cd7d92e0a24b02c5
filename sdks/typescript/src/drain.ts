/**
 * Draining: a worker that is asked to stop tells the dispatcher, takes no new task,
 * lets the tasks in flight finish within a grace period, cancels what remains, and
 * closes. This module holds the request and the handle that makes it; the session
 * carries it out, and signals.ts makes it on SIGTERM and SIGINT.
 */

import { checkDrainTimeout } from "./options.js";

/** A worker being served, as started by {@link startWorker} or {@link startStdio}. */
export interface RunningWorker {
  /** The id the worker registered with (or labels its messages with, on stdio). */
  readonly workerId: string;
  /**
   * Settles as `runWorker` / `serveStdio` would: resolves once the worker has
   * stopped (after a drain, `Shutdown`, the end of stdin, or its `signal`).
   */
  readonly done: Promise<void>;
  /**
   * Drain the worker: send `Backpressure` with `draining: true`, answer any further
   * dispatch `Failed` / `WORKER_SHUTTING_DOWN` (retryable), let the tasks in flight
   * finish for up to `timeoutMs` (default: the worker's `drainTimeoutMs`), then
   * cancel those still running, reporting each `Cancelled` / `WORKER_SHUTTING_DOWN`
   * (retryable), flush, and close (WebSocket code 1000). The worker does not
   * reconnect afterwards. Returns {@link done}.
   *
   * Calling it again during the drain can only bring the deadline closer:
   * `drain(0)` cancels what is still running at once. Rejects with `RangeError`
   * for a `timeoutMs` that is not from 0 to 2³¹−1.
   */
  drain(timeoutMs?: number): Promise<void>;
}

/** A drain asked of a worker, shared by its serving loop and whichever session is current. */
export class DrainRequest {
  private at: number | undefined;
  private readonly watchers = new Set<(deadline: number) => void>();

  /** The `performance.now()` time at which the tasks still running are cancelled; `undefined` until asked. */
  get deadline(): number | undefined {
    return this.at;
  }

  /** Ask for a drain with `timeoutMs` of grace; a deadline can only come closer. */
  request(timeoutMs: number): void {
    const deadline = performance.now() + timeoutMs;
    if (this.at !== undefined && deadline >= this.at) return;
    this.at = deadline;
    for (const watcher of [...this.watchers]) watcher(deadline);
  }

  /** Call `watcher` with the deadline, now if there is one, and whenever it comes closer; returns the unsubscribe. */
  watch(watcher: (deadline: number) => void): () => void {
    this.watchers.add(watcher);
    if (this.at !== undefined) watcher(this.at);
    return () => this.watchers.delete(watcher);
  }
}

/** The handle of a worker whose serving loop (`done`) honours `request`. */
export function runningWorker(
  workerId: string,
  drainTimeoutMs: number,
  request: DrainRequest,
  done: Promise<void>,
): RunningWorker {
  return {
    workerId,
    done,
    async drain(timeoutMs = drainTimeoutMs) {
      request.request(checkDrainTimeout(timeoutMs));
      return done;
    },
  };
}
