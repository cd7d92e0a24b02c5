/**
 * The trio_pipe worker SDK: serve typed task handlers to a trio_pipe dispatcher over
 * WebSocket ({@link io.triopipe.worker.Worker#runWebSocket}) or stdin/stdout
 * ({@link io.triopipe.worker.Worker#serveStdio()}).
 *
 * <p>Each task runs on its own thread of a pool of {@code maxConcurrency} threads.
 * {@code Kill}, the task's {@code timeoutMs} deadline, a non-graceful {@code Shutdown},
 * the end of a drain and a lost connection interrupt the handler's thread; see {@link
 * io.triopipe.worker.TaskContext}, which also reports progress and extends the deadline
 * of a long task. SIGTERM and SIGINT, or {@link io.triopipe.worker.Worker#drain()},
 * drain the worker.
 */
package io.triopipe.worker;
