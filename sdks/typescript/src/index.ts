/**
 * trio-pipe-worker: serve typed task handlers to a trio_pipe dispatcher, over
 * WebSocket ({@link runWorker}) or stdin/stdout ({@link serveStdio}); or start
 * serving ({@link startWorker}, {@link startStdio}) and drain when you choose.
 */

export {
  checkToken,
  HandshakeRefusedError,
  RegistrationRefusedError,
  runWorker,
  startWorker,
  WorkerConnectionError,
} from "./websocket.js";
export type { ReconnectOptions, RunWorkerOptions, TlsFiles } from "./websocket.js";
export { serveStdio, startStdio } from "./stdio.js";
export type { StdioOptions } from "./stdio.js";
export type { RunningWorker } from "./drain.js";
export type { WorkerOptions } from "./options.js";
export { defaultWorkerId } from "./options.js";
export { defineHandler, TaskAbortedError, TaskFailure } from "./handlers.js";
export type { AbortKind, Handler, Handlers, PayloadParser, TaskContext } from "./handlers.js";
export { stderrLogger } from "./log.js";
export type { Logger, LogLevel } from "./log.js";
export { decode, encode, ProtocolError } from "./codec.js";
export type { ProtocolErrorKind } from "./codec.js";
export { ErrorCode, isValidWorkerId } from "./messages.js";
export type * from "./messages.js";
