/** WebSocket mode: connect, register, serve, reconnect with backoff. */

import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
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
  /**
   * The worker's token, sent in every opening handshake as `Authorization: Bearer
   * <token>` (never in the URL, never logged). Default: `TRIO_PIPE_TOKEN` from the
   * environment, when set and not empty.
   */
  readonly token?: string | undefined;
  /** `wss://`: the CA certificates to trust instead of Node's own: PEM contents, or the path of a PEM file. */
  readonly ca?: TlsFiles | undefined;
  /** `wss://`: the worker's client certificate (mutual TLS): PEM contents, or the path of a PEM file. */
  readonly cert?: TlsFiles | undefined;
  /** `wss://`: the private key of `cert`: PEM contents, or the path of a PEM file. */
  readonly key?: TlsFiles | undefined;
  /** Passed to the `ws` client: more TLS settings, `headers`, an `agent`, ... */
  readonly webSocketOptions?: ClientOptions | undefined;
}

/**
 * PEM as node's `tls` takes it (a string or a `Buffer`, or several), where a string
 * that holds no `-----BEGIN` line is the path of a file to read.
 */
export type TlsFiles = string | Buffer | ReadonlyArray<string | Buffer>;

/** The worker could not connect or register, or lost its connection, and may not (or no longer) reconnect. */
export class WorkerConnectionError extends Error {
  override readonly name: string = "WorkerConnectionError";
}

/**
 * The dispatcher answered the opening handshake with HTTP 401 (no token, or one it
 * does not accept) or 403 (a valid token that may not connect). The worker does not
 * reconnect: the same credential cannot succeed.
 */
export class HandshakeRefusedError extends WorkerConnectionError {
  override readonly name = "HandshakeRefusedError";

  constructor(
    /** The HTTP status. */
    readonly status: number,
    /** The answer's body, on one line (its status text when it has none). */
    readonly reason: string,
  ) {
    super(`the dispatcher refused the connection (HTTP ${status}): ${reason}`);
  }
}

/**
 * The dispatcher closed the connection with code 1008 before it accepted the
 * registration (a task type or tag outside the token's scope, a worker id in use).
 * The worker does not reconnect.
 */
export class RegistrationRefusedError extends WorkerConnectionError {
  override readonly name = "RegistrationRefusedError";

  constructor(
    /** The close reason. */
    readonly reason: string,
  ) {
    super(`the dispatcher refused the registration: ${reason}`);
  }
}

/** Handshake answers that end the worker instead of a reconnection. */
const FATAL_STATUSES: ReadonlySet<number> = new Set([401, 403]);
/** What is read of a refusal's body, and kept of it for the reason. */
const MAX_REFUSAL_BYTES = 4096;
const MAX_REASON_CHARS = 200;

const LANGUAGE = "TypeScript";
const MAX_FRAME_BYTES = 16 * 1024 * 1024;

interface Config extends Settings {
  readonly reconnect: ReconnectPolicy;
  readonly url: string;
  readonly address: string; // host:port, for messages
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
  /** Why the worker must stop instead of reconnecting, if it must. */
  readonly fatal?: WorkerConnectionError | undefined;
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
      if (attempt.fatal !== undefined) throw attempt.fatal;
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
  const port = parsed.port || (parsed.protocol === "wss:" ? "443" : "80");
  return {
    ...base,
    reconnect: reconnectPolicy(options.reconnect),
    url,
    address: `${parsed.hostname.replace(/^\[(.*)\]$/, "$1")}:${port}`,
    tags,
    heartbeatIntervalMs,
    connectTimeoutMs: checkPositive("connectTimeoutMs", options.connectTimeoutMs ?? 10_000),
    silenceTimeoutMs: checkPositive(
      "silenceTimeoutMs",
      options.silenceTimeoutMs ?? Math.max(15_000, 3 * heartbeatIntervalMs),
    ),
    webSocketOptions: credentials(options, parsed.protocol === "wss:"),
    startedAt: performance.now(),
  };
}

/**
 * `webSocketOptions` with the token's header and the TLS files added; throws
 * `TypeError` for a token that cannot be a header, TLS options for `ws://`, and a
 * file that cannot be read.
 */
function credentials(options: RunWorkerOptions, secure: boolean): ClientOptions {
  const given = options.webSocketOptions ?? {};
  const tls = { ca: options.ca, cert: options.cert, key: options.key };
  const named = Object.entries(tls).filter(([, value]) => value !== undefined);
  if (named.length > 0 && !secure) {
    throw new TypeError(`${named.map(([name]) => name).join(", ")}: TLS options are for wss:// URLs only`);
  }
  const result: ClientOptions = { ...given };
  for (const [name, value] of named) {
    Object.assign(result, { [name]: readPem(name, value as TlsFiles) });
  }
  const token = options.token ?? (process.env["TRIO_PIPE_TOKEN"] || undefined);
  if (token !== undefined) {
    result.headers = { ...given.headers, Authorization: `Bearer ${checkToken(token)}` };
  }
  return result;
}

/** `token` if it can go in an HTTP header; throws `TypeError` (without showing it) otherwise. */
export function checkToken(token: string): string {
  if (typeof token !== "string") throw new TypeError("the token must be a string");
  if (token === "") throw new TypeError("the token is empty");
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new TypeError("the token may hold only printable ASCII characters without spaces");
  }
  return token;
}

/** PEM contents for node's `tls`: strings that hold no PEM block are paths, read now. */
function readPem(name: string, value: TlsFiles): string | Buffer | Array<string | Buffer> {
  const read = (item: string | Buffer): string | Buffer => {
    if (typeof item !== "string" || item.includes("-----BEGIN")) return item;
    try {
      return readFileSync(item);
    } catch (error) {
      throw new TypeError(`${name}: cannot read ${item}: ${(error as Error).message}`);
    }
  };
  return Array.isArray(value) ? value.map(read) : read(value as string | Buffer);
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
      return { registered: false, lost: true, reason: error.message, fatal: link.refusal() };
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
  /** The dispatcher's answer to the handshake, if it was an HTTP error. */
  private refused: HandshakeRefusedError | undefined;
  /** The last error the connection met (a TLS failure, for one). */
  private lastError: Error | undefined;
  /** The code and reason of the close frame that ended the connection. */
  private closeCode: number | undefined;
  private closeReason = "";

  constructor(config: Config) {
    this.logger = config.logger;
    this.closeTimeoutMs = config.connectTimeoutMs;
    this.socket = new WebSocket(config.url, {
      handshakeTimeout: config.connectTimeoutMs,
      maxPayload: MAX_FRAME_BYTES,
      ...config.webSocketOptions,
    });
    this.silenceTimeoutMs = config.silenceTimeoutMs;
    this.socket.on("error", (error) => {
      this.lastError = error;
      this.logger.debug(`WebSocket error: ${error.message}`);
    });
    this.socket.on("unexpected-response", (request, response) => this.onRefused(request, response));
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
        this.closeCode = code;
        this.closeReason = reason.toString("utf8");
        resolve(
          this.refused?.message ??
            this.droppedBecause ??
            describeTlsFailure(config.address, this.lastError) ??
            describeClose(config.url, code, this.closeReason),
        );
      }),
    );
    this.opened = new Promise((resolve, reject) => {
      this.socket.once("open", () => resolve());
      void this.closed.then((reason) => reject(new TransportClosed(reason)));
    });
  }

  /**
   * Why the worker must stop, once the connection is over: the dispatcher refused
   * the handshake with 401 or 403, or closed with 1008 before the registration was
   * accepted (call it only then).
   */
  refusal(): WorkerConnectionError | undefined {
    if (this.refused !== undefined) return FATAL_STATUSES.has(this.refused.status) ? this.refused : undefined;
    if (this.closeCode === 1008) {
      return new RegistrationRefusedError(this.closeReason || "no reason given");
    }
    return undefined;
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

  /** An HTTP error instead of the upgrade: read the reason in its body, then drop the connection. */
  private onRefused(request: { destroy(): void }, response: IncomingMessage): void {
    const status = response.statusCode ?? 0;
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      const text = Buffer.concat(chunks).subarray(0, MAX_REFUSAL_BYTES).toString("utf8");
      let reason = text.split(/\s+/).filter(Boolean).join(" ") || response.statusMessage || "no reason given";
      if (reason.length > MAX_REASON_CHARS) reason = `${reason.slice(0, MAX_REASON_CHARS - 3)}...`;
      this.refused ??= new HandshakeRefusedError(status, reason);
      request.destroy();
      this.socket.terminate();
    };
    response.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= MAX_REFUSAL_BYTES) done();
    });
    response.once("end", done);
    response.once("error", done);
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

/** OpenSSL's certificate verification failures, as node names them. */
const VERIFY_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** A failed TLS handshake, named for people; `undefined` for any other error. */
function describeTlsFailure(address: string, error: Error | undefined): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error === undefined || code === undefined) return undefined;
  let why: string | undefined;
  if (VERIFY_CODES.has(code)) {
    why = `certificate verify failed: ${error.message}`;
  } else if (code.startsWith("ERR_SSL_")) {
    // "...:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:..."
    why = code.slice("ERR_SSL_".length).toLowerCase().replaceAll("_", " ");
    if (code.endsWith("CERTIFICATE_REQUIRED")) why += " (the server requires a client certificate)";
  }
  return why === undefined ? undefined : `TLS handshake with ${address} failed: ${why}`;
}

function describeClose(url: string, code: number, reason: string): string {
  if (code === 1006) return `the connection to ${url} was lost`;
  return `the dispatcher closed the connection with code ${code}${reason ? ` (${reason})` : ""}`;
}
