/**
 * SIGTERM and SIGINT for the run entry points (`runWorker`, `serveStdio`): what
 * Kubernetes, systemd, Docker and Ctrl-C send to ask a worker to stop.
 */

import type { RunningWorker } from "./drain.js";
import type { Logger } from "./log.js";

/** The signals handled, and the exit status each leaves: 130 = 128 + 2 is how shells report Ctrl-C. */
const EXIT_STATUS = { SIGTERM: 0, SIGINT: 130 } as const;
type HandledSignal = keyof typeof EXIT_STATUS;

/**
 * After a second signal, how long the cancelled tasks' reports and the close may
 * take before the process exits anyway.
 */
const IMMEDIATE_EXIT_BOUND_MS = 2_000;

/**
 * Wait for `worker` to stop, draining it on the first SIGTERM or SIGINT and setting
 * the process's exit status (0 after SIGTERM, 130 after SIGINT) for when it exits.
 * A second signal during the drain cancels the tasks still running and exits the
 * process with that status as soon as their results are out (within
 * {@link IMMEDIATE_EXIT_BOUND_MS}), even if a handler that ignores its signal is
 * still running. The listeners are removed when the worker stops.
 */
export async function drainOnSignals(worker: RunningWorker, logger: Logger): Promise<void> {
  let first: HandledSignal | undefined;
  const onSignal = (signal: HandledSignal): void => {
    if (first === undefined) {
      first = signal;
      process.exitCode = EXIT_STATUS[signal];
      logger.info(`${signal} received: draining (a second signal stops at once)`);
      worker.drain().catch(() => {}); // a failure surfaces through worker.done, awaited below
      return;
    }
    const status = EXIT_STATUS[first];
    logger.warn(`${signal} received during the drain: cancelling the tasks still running and exiting`);
    const exit = (): never => process.exit(status);
    setTimeout(exit, IMMEDIATE_EXIT_BOUND_MS).unref();
    worker.drain(0).then(exit, exit);
  };
  process.on("SIGTERM", onSignal).on("SIGINT", onSignal);
  try {
    await worker.done;
  } finally {
    process.off("SIGTERM", onSignal).off("SIGINT", onSignal);
  }
}
