package io.triopipe.worker;

import io.triopipe.worker.protocol.TaskError;
import io.triopipe.worker.protocol.TaskStatus;

/** Why a running task was stopped, and how it is then reported. */
record Stop(TaskStatus status, TaskError error) {
    static Stop killed(String reason) {
        String message = reason.isEmpty() ? "killed by the dispatcher" : reason;
        return new Stop(TaskStatus.CANCELLED, new TaskError(ErrorCodes.KILLED, message, false));
    }

    static Stop timedOut(long timeoutMs) {
        String message = "task exceeded its timeout of " + timeoutMs + " ms";
        return new Stop(TaskStatus.TIMED_OUT, new TaskError(ErrorCodes.TIMEOUT, message, true));
    }

    static Stop shutDown() {
        String message = "the worker was shut down (not gracefully)";
        return new Stop(TaskStatus.CANCELLED, new TaskError(ErrorCodes.WORKER_SHUTTING_DOWN, message, true));
    }

    /** The connection is gone: the result is dropped, so what it would say does not matter. */
    static Stop lost(String reason) {
        return new Stop(TaskStatus.CANCELLED, new TaskError("CONNECTION_LOST", reason, true));
    }
}
