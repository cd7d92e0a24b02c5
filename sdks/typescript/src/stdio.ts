/**
 * stdio mode: newline-delimited JSON on stdin and stdout, for a worker process
 * that a dispatcher spawns (directly, in a container, over SSH). The dispatcher
 * registers such a process itself, so nothing is sent before the first result.
 */

import type { Readable, Writable } from "node:stream";

import { DrainRequest, runningWorker } from "./drain.js";
import type { RunningWorker } from "./drain.js";
import { checkPositive, settings } from "./options.js";
import type { Settings, WorkerOptions } from "./options.js";
import { Session } from "./session.js";
import type { Link } from "./session.js";
import { drainOnSignals } from "./signals.js";

/** Options of {@link serveStdio}. */
export interface StdioOptions extends WorkerOptions {
  /** Milliseconds between heartbeats. Default: none (the dispatcher watches the process instead). */
  readonly heartbeatIntervalMs?: number | undefined;
  /** Where messages come from. Default: `process.stdin`. */
  readonly input?: Readable | undefined;
  /** Where messages go; nothing else is ever written to it. Default: `process.stdout`. */
  readonly output?: Writable | undefined;
  /** A longer input line is logged and skipped. Default: 16 MiB, the dispatcher's frame limit. */
  readonly maxLineBytes?: number | undefined;
}

const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;
/** Bounds the flush of the last results after `Shutdown`: a dispatcher that stops reading for that long is gone. */
const FLUSH_TIMEOUT_MS = 10_000;

/**
 * Serve `handlers` to the dispatcher that spawned this process, over stdin and stdout.
 *
 * Resolves after `Shutdown` (graceful: once the tasks in flight have finished and
 * their results are written, even if stdin closes meanwhile; not graceful: once
 * they are aborted and reported `Cancelled`), after a drain, when stdin ends or
 * stdout breaks before any `Shutdown` (handlers are then aborted and their results
 * dropped), or when `signal` aborts. Then it stops reading stdin, so that the
 * process can exit. Rejects only with `TypeError` / `RangeError` for invalid options.
 *
 * Unless `handleSignals` is `false`, SIGTERM and SIGINT drain the worker (see
 * {@link RunningWorker.drain}) with `drainTimeoutMs` of grace, and set the process's
 * exit status to 0 (SIGTERM) or 130 (SIGINT); a second signal during the drain
 * cancels the tasks still running and exits the process at once.
 *
 * Only protocol messages are written to `output`: log to stderr, never with
 * `console.log`, which writes to stdout too. Input lines that are not JSON objects
 * with a `"type"` (blank lines, text) are skipped.
 */
export async function serveStdio(options: StdioOptions): Promise<void> {
  const config = configure(options);
  const worker = start(config, options);
  await (config.handleSignals ? drainOnSignals(worker, config.logger) : worker.done);
}

/**
 * Start serving as {@link serveStdio} does, without installing signal handlers, and
 * return a handle to drain the worker with. Throws `TypeError` / `RangeError` for
 * invalid options.
 */
export function startStdio(options: StdioOptions): RunningWorker {
  return start(configure(options), options);
}

interface Config extends Settings {
  readonly heartbeatIntervalMs: number | null;
  readonly maxLineBytes: number;
}

function configure(options: StdioOptions): Config {
  const interval = options.heartbeatIntervalMs;
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
    throw new RangeError(`maxLineBytes must be an integer >= 1, got ${maxLineBytes}`);
  }
  return {
    ...settings(options, 1),
    heartbeatIntervalMs: interval === undefined ? null : checkPositive("heartbeatIntervalMs", interval),
    maxLineBytes,
  };
}

function start(config: Config, options: StdioOptions): RunningWorker {
  const drain = new DrainRequest();
  return runningWorker(config.workerId, config.drainTimeoutMs, drain, serve(config, options, drain));
}

async function serve(config: Config, options: StdioOptions, drain: DrainRequest): Promise<void> {
  const { handlers, workerId, logger, maxLineBytes } = config;
  const { input = process.stdin, output = process.stdout, signal } = options;
  if (signal?.aborted) return;

  const session = new Session(new StreamLink(output), {
    ...config,
    flushTimeoutMs: FLUSH_TIMEOUT_MS,
    startedAt: performance.now(),
    linesMayBeLog: true,
  });
  const lines = new LineSplitter(maxLineBytes, (line) => session.receive(line), (size) =>
    logger.warn(`skipping an input line of ${size} bytes (the limit is ${maxLineBytes})`),
  );
  const onData = (chunk: Buffer): void => lines.push(chunk);
  const onEnd = (): void => {
    lines.end();
    session.inputClosed("stdin reached end of file");
  };
  const onInputError = (error: Error): void => session.inputClosed(`reading stdin failed: ${error.message}`);
  const onOutputError = (error: Error): void => session.lost(`writing to stdout failed: ${error.message}`);
  const onAbort = (): void => session.stop("stopped by the worker's signal");

  input.on("data", onData).on("end", onEnd).on("close", onEnd).on("error", onInputError);
  output.on("error", onOutputError);
  signal?.addEventListener("abort", onAbort, { once: true });
  const unwatch = drain.watch((deadline) => session.drain(deadline));
  logger.info(`serving ${[...handlers.keys()].join(", ")} on stdin/stdout as ${workerId}`);
  try {
    const end = await session.ended;
    logger.info(`stdio worker ${workerId} stopped: ${end.reason}`);
  } finally {
    // The output's error listener stays: a write that fails late must not become an uncaught error.
    input.off("data", onData).off("end", onEnd).off("close", onEnd).off("error", onInputError);
    signal?.removeEventListener("abort", onAbort);
    unwatch();
    input.pause(); // a paused stdin no longer keeps the process alive
  }
}

/** Writes one message per line; {@link drained} waits for the last write. */
class StreamLink implements Link {
  private lastWrite: Promise<void> = Promise.resolve();

  constructor(private readonly output: Writable) {}

  send(frame: string): void {
    this.lastWrite = new Promise((resolve) => this.output.write(`${frame}\n`, () => resolve()));
  }

  drained(): Promise<void> {
    return this.lastWrite;
  }
}

/**
 * Splits a byte stream into UTF-8 lines at `\n`. A line longer than `maxBytes`
 * is reported to `onTooLong` and dropped without being buffered whole. A last
 * line without its newline is delivered at the end of input.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Inside an over-long line: drop everything up to its newline. */
  private skipping = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onTooLong: (size: string) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (let end = chunk.indexOf(0x0a); end >= 0; end = chunk.indexOf(0x0a, start)) {
      const size = this.pendingBytes + end - start;
      if (this.skipping) {
        this.skipping = false;
      } else if (size > this.maxBytes) {
        this.onTooLong(String(size));
      } else {
        this.pending.push(chunk.subarray(start, end));
        this.onLine(Buffer.concat(this.pending).toString("utf8"));
      }
      this.pending = [];
      this.pendingBytes = 0;
      start = end + 1;
    }
    if (this.skipping || start === chunk.length) return;
    this.pending.push(chunk.subarray(start));
    this.pendingBytes += chunk.length - start;
    if (this.pendingBytes > this.maxBytes) {
      this.onTooLong(`more than ${this.maxBytes}`);
      this.pending = [];
      this.pendingBytes = 0;
      this.skipping = true;
    }
  }

  /** The end of input: deliver a last line that lacks its newline. */
  end(): void {
    if (this.pendingBytes > 0) this.onLine(Buffer.concat(this.pending).toString("utf8"));
    this.pending = [];
    this.pendingBytes = 0;
  }
}
