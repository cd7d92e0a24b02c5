package io.triopipe.worker;

import io.triopipe.worker.protocol.TaskError;
import io.triopipe.worker.protocol.TaskStatus;

/** Why a running task was stopped, and how it is then reported. */
record Stop(TaskStatus status, TaskError error) {
    static Stop killed(String reason) {
        String message = reason.isEmpty() ? "killed by the dispatcher" : reason;
        return new Stop(TaskStatus.CANCELLED, new TaskError(ErrorCodes.KILLED, message, false));
    }

    /**
     * @param timeoutMs the task's {@code timeoutMs}
     * @param allowedMs the time it had from receipt, longer if it extended its deadline
     */
    static Stop timedOut(long timeoutMs, long allowedMs) {
        String message = "task exceeded its timeout of " + timeoutMs + " ms"
                + (allowedMs > timeoutMs ? " (extended to " + allowedMs + " ms)" : "");
        return new Stop(TaskStatus.TIMED_OUT, new TaskError(ErrorCodes.TIMEOUT, message, true));
    }

    static Stop shutDown() {
        return shuttingDown("the worker was shut down (not gracefully)");
    }

    /** The worker stopped draining before the task finished: the dispatcher retries it at once. */
    static Stop shuttingDown(String message) {
        return new Stop(TaskStatus.CANCELLED, new TaskError(ErrorCodes.WORKER_SHUTTING_DOWN, message, true));
    }

    /** The connection is gone: the result is dropped, so what it would say does not matter. */
    static Stop lost(String reason) {
        return new Stop(TaskStatus.CANCELLED, new TaskError("CONNECTION_LOST", reason, true));
    }
}
