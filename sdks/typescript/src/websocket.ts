/** WebSocket mode: connect, register, serve, reconnect with backoff. */

import { setTimeout as sleep } from "node:timers/promises";

import WebSocket from "ws";
import type { ClientOptions } from "ws";

import { decode, encode, ProtocolError } from "./codec.js";
import { DrainRequest, runningWorker } from "./drain.js";
import type { RunningWorker } from "./drain.js";
import type { Logger } from "./log.js";
import type { WorkerRegistration } from "./messages.js";
import { checkPositive, settings } from "./options.js";
import type { Settings, WorkerOptions } from "./options.js";
import { Session } from "./session.js";
import type { Link } from "./session.js";
import { drainOnSignals } from "./signals.js";

/** How to reconnect when the connection is lost (not after `Shutdown`). */
export interface ReconnectOptions {
  /** The first delay's upper bound, in milliseconds. Default 100. */
  readonly initialDelayMs?: number | undefined;
  /** The delay's upper bound never grows past this. Default 10 000. */
  readonly maxDelayMs?: number | undefined;
  /**
   * How many attempts in a row may fail (to connect, or to register) before the
   * worker gives up and `runWorker` rejects. A registration resets the count.
   * Default: unlimited.
   */
  readonly maxRetries?: number | undefined;
}

/** Options of {@link runWorker}. */
export interface RunWorkerOptions extends WorkerOptions {
  /** The dispatcher's `ws://` or `wss://` URL. */
  readonly url: string | URL;
  /** Labels tasks can be routed by. Default none. */
  readonly tags?: readonly string[] | undefined;
  /** `true` (default): reconnect forever; `false`: reject when the connection fails or is lost. */
  readonly reconnect?: boolean | ReconnectOptions | undefined;
  /**
   * Bounds opening the connection, the wait for the dispatcher to accept the
   * registration (silence for this long counts as acceptance, as from a rust-pipe
   * 0.1 dispatcher, which never answers), and the final flush and close. Default 10 000.
   */
  readonly connectTimeoutMs?: number | undefined;
  /**
   * A connection that brings no message at all for this long, from a dispatcher that
   * answers (it has sent `WorkerRegistered` or a `HeartbeatAck`: it then answers
   * every heartbeat), is taken as dead and reconnected. A dispatcher that never
   * answers (rust-pipe 0.1) is not watched. Default: 3 heartbeat intervals, at
   * least 15 000.
   */
  readonly silenceTimeoutMs?: number | undefined;
  /** Passed to the `ws` client: TLS settings (`ca`, `cert`), `headers`, an `agent`, ... */
  readonly webSocketOptions?: ClientOptions | undefined;
}

/** The worker could not connect or register, or lost its connection, and may not (or no longer) reconnect. */
export class WorkerConnectionError extends Error {
  override readonly name = "WorkerConnectionError";
}

const LANGUAGE = "TypeScript";
const MAX_FRAME_BYTES = 16 * 1024 * 1024;

interface Config extends Settings {
  readonly reconnect: ReconnectPolicy;
  readonly url: string;
  readonly tags: readonly string[];
  readonly heartbeatIntervalMs: number;
  readonly connectTimeoutMs: number;
  readonly silenceTimeoutMs: number;
  readonly webSocketOptions: ClientOptions;
  readonly startedAt: number;
}

/** How one connection ended. */
interface Attempt {
  readonly registered: boolean;
  readonly lost: boolean;
  readonly reason: string;
}

/**
 * Serve `handlers` to the dispatcher at `url` until it sends `Shutdown`, or the
 * worker is drained.
 *
 * Connects, registers as `workerId` with the task types of `handlers` (and
 * `maxConcurrencyByType`), then runs each dispatched task (at most
 * `maxConcurrency` at once, and at most its type's limit), aborts a task's
 * `ctx.signal` on `Kill` or when its `timeoutMs` runs out, sends a heartbeat every
 * `heartbeatIntervalMs` (default 5 000) and `Backpressure` when the worker fills
 * up or frees up.
 *
 * Resolves after `Shutdown` (graceful: once the tasks in flight have finished and
 * their results are flushed; not graceful: once they are aborted and reported
 * `Cancelled`) or a drain, the connection closed with code 1000. Also resolves
 * when `signal` aborts: handlers are aborted, their results dropped, and the
 * connection closed with code 1001.
 *
 * Unless `handleSignals` is `false`, SIGTERM and SIGINT drain the worker (see
 * {@link RunningWorker.drain}) with `drainTimeoutMs` of grace, and set the process's
 * exit status to 0 (SIGTERM) or 130 (SIGINT); a second signal during the drain
 * cancels the tasks still running and exits the process at once.
 *
 * A connection that fails, is lost, or falls silent without `Shutdown` aborts the
 * handlers in flight (the dispatcher retries their tasks) and, unless
 * `reconnect` is `false`, is opened again after a random delay whose bound doubles
 * per failed attempt; the worker keeps its id. Rejects with
 * {@link WorkerConnectionError} when it may not reconnect (any more), and with
 * `TypeError` / `RangeError` for invalid options, before any I/O.
 */
export async function runWorker(options: RunWorkerOptions): Promise<void> {
  const config = configure(options);
  const worker = start(config, options.signal);
  await (config.handleSignals ? drainOnSignals(worker, config.logger) : worker.done);
}

/**
 * Start serving as {@link runWorker} does, without installing signal handlers, and
 * return a handle to drain the worker with. Throws `TypeError` / `RangeError` for
 * invalid options.
 */
export function startWorker(options: RunWorkerOptions): RunningWorker {
  return start(configure(options), options.signal);
}

function start(config: Config, signal: AbortSignal | undefined): RunningWorker {
  const drain = new DrainRequest();
  return runningWorker(config.workerId, config.drainTimeoutMs, drain, serve(config, signal, drain));
}

/** Connect, serve, reconnect after a loss: until `Shutdown`, a drain, `signal`, or too many failures. */
async function serve(config: Config, signal: AbortSignal | undefined, drain: DrainRequest): Promise<void> {
  const { logger, reconnect: policy } = config;
  const stopped = (): boolean => signal?.aborted === true || drain.deadline !== undefined;
  // Ends the wait before a reconnection early.
  const interrupt = new AbortController();
  const onStop = (): void => interrupt.abort();
  signal?.addEventListener("abort", onStop, { once: true });
  const unwatch = drain.watch(onStop);
  let failures = 0;
  try {
    while (!stopped()) {
      const attempt = await serveConnection(config, signal, drain);
      if (!attempt.lost || stopped()) return;
      if (attempt.registered) failures = 0;
      if (failures >= policy.maxRetries) {
        throw new WorkerConnectionError(`worker ${config.workerId}: ${attempt.reason}`);
      }
      const delay = Math.round(Math.random() * Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** failures));
      failures += 1;
      logger.warn(`${attempt.reason}; reconnecting in ${delay} ms`);
      try {
        await sleep(delay, undefined, { signal: interrupt.signal });
      } catch {
        return; // stopped or drained while waiting
      }
    }
  } finally {
    signal?.removeEventListener("abort", onStop);
    unwatch();
  }
}

function configure(options: RunWorkerOptions): Config {
  const base = settings(options, 10);
  const url = String(options.url);
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (parsed === undefined || !["ws:", "wss:"].includes(parsed.protocol) || parsed.hostname === "") {
    throw new TypeError(`expected a ws:// or wss:// URL with a host, got '${url}'`);
  }
  const tags = [...(options.tags ?? [])];
  if (!tags.every((tag) => typeof tag === "string")) throw new TypeError("tags must be strings");
  const heartbeatIntervalMs = checkPositive("heartbeatIntervalMs", options.heartbeatIntervalMs ?? 5_000);
  return {
    ...base,
    reconnect: reconnectPolicy(options.reconnect),
    url,
    tags,
    heartbeatIntervalMs,
    connectTimeoutMs: checkPositive("connectTimeoutMs", options.connectTimeoutMs ?? 10_000),
    silenceTimeoutMs: checkPositive(
      "silenceTimeoutMs",
      options.silenceTimeoutMs ?? Math.max(15_000, 3 * heartbeatIntervalMs),
    ),
    webSocketOptions: options.webSocketOptions ?? {},
    startedAt: performance.now(),
  };
}

interface ReconnectPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxRetries: number;
}

function reconnectPolicy(option: RunWorkerOptions["reconnect"]): ReconnectPolicy {
  const given = typeof option === "object" ? option : {};
  const policy = {
    initialDelayMs: checkPositive("reconnect.initialDelayMs", given.initialDelayMs ?? 100),
    maxDelayMs: checkPositive("reconnect.maxDelayMs", given.maxDelayMs ?? 10_000),
    maxRetries: option === false ? 0 : (given.maxRetries ?? Infinity),
  };
  if (!(Number.isInteger(policy.maxRetries) || policy.maxRetries === Infinity) || policy.maxRetries < 0) {
    throw new RangeError(`reconnect.maxRetries must be an integer >= 0, got ${policy.maxRetries}`);
  }
  if (policy.maxDelayMs < policy.initialDelayMs) {
    throw new RangeError("reconnect.maxDelayMs must be >= reconnect.initialDelayMs");
  }
  return policy;
}

/**
 * One connection: open, register, serve until it ends, close. A drain before
 * registration closes the connection (code 1000 if it is open).
 */
async function serveConnection(
  config: Config,
  signal: AbortSignal | undefined,
  drain: DrainRequest,
): Promise<Attempt> {
  const { logger } = config;
  const link = new SocketLink(config);
  let session: Session | undefined;
  const onAbort = (): void => (session ? session.stop("stopped by the worker's signal") : link.terminate("stopped"));
  const onDrain = (deadline: number): void => {
    if (session) session.drain(deadline);
    else void link.close(1000, "worker draining");
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  const unwatch = drain.watch(onDrain);
  try {
    let accepted: Acceptance;
    try {
      await link.opened;
      accepted = await register(link, config);
    } catch (error) {
      if (!(error instanceof TransportClosed)) throw error;
      link.terminate(error.message);
      return { registered: false, lost: true, reason: error.message };
    }
    logger.info(`registered as ${config.workerId} for ${[...config.handlers.keys()].join(", ")}`);
    const current = new Session(link, {
      ...config,
      flushTimeoutMs: config.connectTimeoutMs,
      linesMayBeLog: false,
      onAnswer: () => link.watchSilence(),
    });
    session = current;
    if (accepted.silent) current.heartbeat(); // a silent dispatcher must hear from us
    for (const frame of accepted.early) current.receive(frame);
    link.receiveWith((frame) => current.receive(frame));
    void link.closed.then((reason) => current.lost(reason));
    if (drain.deadline !== undefined) current.drain(drain.deadline); // asked for while registering
    const end = await current.ended;
    if (end.lost) {
      link.terminate(end.reason);
    } else {
      logger.info(`worker ${config.workerId} stops: ${end.reason}`);
      const stopped = signal?.aborted === true;
      await link.close(stopped ? 1001 : 1000, stopped ? "worker stopping" : "worker shut down");
    }
    return { registered: true, lost: end.lost, reason: end.reason };
  } finally {
    signal?.removeEventListener("abort", onAbort);
    unwatch();
  }
}

/** How the dispatcher accepted a registration. */
interface Acceptance {
  /** A task that came before any answer (rust-pipe 0.1 never answers): served first. */
  readonly early: readonly string[];
  /** Nothing came within `connectTimeoutMs`. */
  readonly silent: boolean;
}

const SILENCE = Symbol("silence");

/**
 * Send `WorkerRegister` and wait, at most `connectTimeoutMs`, for the dispatcher to
 * accept it: `WorkerRegistered`, a `TaskDispatch` that comes first (served first),
 * or silence until the timeout (an idle rust-pipe 0.1 dispatcher sends nothing; a
 * dispatcher that refuses closes the connection). Anything else before that is
 * logged and ignored.
 */
async function register(link: SocketLink, config: Config): Promise<Acceptance> {
  const { logger, connectTimeoutMs } = config;
  const answered = new Promise<Acceptance>((resolve) => {
    link.receiveWith((frame) => {
      let message;
      try {
        message = decode(frame);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        logger.warn(`ignoring a malformed message from the dispatcher: ${error.message}`);
        return;
      }
      if (message.type === "WorkerRegistered") {
        if (message.workerId !== config.workerId) {
          logger.warn(`the dispatcher acknowledged worker id ${message.workerId}, we registered ${config.workerId}`);
        }
        link.watchSilence(); // a dispatcher that answers: its silence will mean something
        link.receiveWith(undefined); // hold what follows for the session
        resolve({ early: [], silent: false });
      } else if (message.type === "TaskDispatch") {
        logger.debug("a task came before WorkerRegistered (as from rust-pipe 0.1): the registration is accepted");
        link.receiveWith(undefined);
        resolve({ early: [frame], silent: false });
      } else {
        logger.warn(`ignoring ${message.type} received before the registration was accepted`);
      }
    });
  });
  const registration: WorkerRegistration = {
    workerId: config.workerId,
    supportedTasks: [...config.handlers.keys()],
    maxConcurrency: config.maxConcurrency,
    language: LANGUAGE,
    tags: config.tags,
    maxConcurrencyByType: Object.fromEntries(config.maxConcurrencyByType),
  };
  link.send(encode({ type: "WorkerRegister", registration }));
  const timeout = new AbortController();
  try {
    const outcome = await Promise.race([
      answered,
      link.closed.then((reason) => new TransportClosed(reason)),
      sleep(connectTimeoutMs, SILENCE, { signal: timeout.signal }),
    ]);
    if (outcome instanceof TransportClosed) throw outcome;
    if (outcome !== SILENCE) return outcome;
    link.receiveWith(undefined);
    logger.debug(
      `no answer to WorkerRegister within ${connectTimeoutMs} ms (as from an idle rust-pipe 0.1 dispatcher): ` +
        "the registration is taken as accepted",
    );
    return { early: [], silent: true };
  } finally {
    timeout.abort();
  }
}

/** The connection is gone, or could not be made. */
class TransportClosed extends Error {}

/** A `ws` client connection as a session {@link Link}, with a silence watchdog. */
class SocketLink implements Link {
  /** Resolves once the connection is open; rejects with {@link TransportClosed} if it closes first. */
  readonly opened: Promise<void>;
  /** Resolves, with why, once the connection is closed. */
  readonly closed: Promise<string>;

  private readonly socket: WebSocket;
  /** Drops the connection after `silenceTimeoutMs` without a message; armed by {@link watchSilence}. */
  private watchdog: NodeJS.Timeout | undefined;
  private readonly silenceTimeoutMs: number;
  private isClosed = false;
  private readonly logger: Logger;
  private readonly closeTimeoutMs: number;
  private lastWrite: Promise<void> = Promise.resolve();
  private receiver: ((frame: string) => void) | undefined;
  /** Text frames received while there was no receiver. */
  private readonly held: string[] = [];
  /** Why we dropped the connection ourselves, if we did. */
  private droppedBecause: string | undefined;

  constructor(config: Config) {
    this.logger = config.logger;
    this.closeTimeoutMs = config.connectTimeoutMs;
    this.socket = new WebSocket(config.url, {
      handshakeTimeout: config.connectTimeoutMs,
      maxPayload: MAX_FRAME_BYTES,
      ...config.webSocketOptions,
    });
    this.silenceTimeoutMs = config.silenceTimeoutMs;
    this.socket.on("error", (error) => this.logger.debug(`WebSocket error: ${error.message}`));
    this.socket.on("message", (data, isBinary) => {
      this.watchdog?.refresh();
      if (isBinary) {
        this.logger.warn("ignoring a binary frame from the dispatcher");
      } else {
        const frame = (data as Buffer).toString("utf8"); // binaryType is "nodebuffer"
        if (this.receiver === undefined) this.held.push(frame);
        else this.receiver(frame);
      }
    });
    this.closed = new Promise((resolve) =>
      this.socket.once("close", (code, reason) => {
        this.isClosed = true;
        clearTimeout(this.watchdog);
        resolve(this.droppedBecause ?? describeClose(config.url, code, reason.toString("utf8")));
      }),
    );
    this.opened = new Promise((resolve, reject) => {
      this.socket.once("open", () => resolve());
      void this.closed.then((reason) => reject(new TransportClosed(reason)));
    });
  }

  /**
   * From now on, drop the connection when no message comes for `silenceTimeoutMs`.
   * Only for a dispatcher that answers (a heartbeat is answered within the time).
   */
  watchSilence(): void {
    if (this.watchdog !== undefined || this.isClosed) return;
    const silence = this.silenceTimeoutMs;
    this.watchdog = setTimeout(() => this.terminate(`no message from the dispatcher within ${silence} ms`), silence);
  }

  /** Deliver text frames to `receiver`, those held back first; `undefined` holds them back. */
  receiveWith(receiver: ((frame: string) => void) | undefined): void {
    this.receiver = receiver;
    while (this.receiver === receiver && receiver !== undefined && this.held.length > 0) {
      receiver(this.held.shift() as string);
    }
  }

  send(frame: string): void {
    this.lastWrite = new Promise((resolve) => this.socket.send(frame, () => resolve()));
  }

  drained(): Promise<void> {
    return this.lastWrite;
  }

  /** Drop the connection at once, without a closing handshake. */
  terminate(reason: string): void {
    this.droppedBecause ??= reason;
    this.socket.terminate();
  }

  /**
   * The closing handshake, after everything queued; dropped if it takes longer than
   * connectTimeoutMs. A connection still being opened is dropped at once.
   */
  async close(code: number, reason: string): Promise<void> {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close(code, reason);
    else if (this.socket.readyState === WebSocket.CONNECTING) this.terminate(reason);
    const timer = setTimeout(() => this.terminate("the closing handshake timed out"), this.closeTimeoutMs);
    await this.closed;
    clearTimeout(timer);
  }
}

function describeClose(url: string, code: number, reason: string): string {
  if (code === 1006) return `the connection to ${url} was lost`;
  return `the dispatcher closed the connection with code ${code}${reason ? ` (${reason})` : ""}`;
}
