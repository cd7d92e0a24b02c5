package io.triopipe.worker;

/** The error codes this SDK writes in failed, timed-out and cancelled results. */
public final class ErrorCodes {
    /** The handler threw ({@code Failed}, retryable). */
    public static final String HANDLER_ERROR = "HANDLER_ERROR";
    /** No handler for the task type ({@code Failed}, not retryable). */
    public static final String UNKNOWN_TASK_TYPE = "UNKNOWN_TASK_TYPE";
    /**
     * The payload does not bind to the handler's input type, or the result is not JSON
     * ({@code Failed}, not retryable).
     */
    public static final String PARSE_ERROR = "PARSE_ERROR";
    /** The task's {@code timeoutMs} ran out ({@code TimedOut}, retryable). */
    public static final String TIMEOUT = "TIMEOUT";
    /** The task was stopped by {@code Kill} ({@code Cancelled}, not retryable). */
    public static final String KILLED = "KILLED";
    /**
     * A task arrived while every slot, or every slot its type may take, was busy
     * ({@code Failed}, retryable).
     */
    public static final String WORKER_SATURATED = "WORKER_SATURATED";
    /**
     * A task arrived after {@code Shutdown} or once the worker drains ({@code Failed}), or
     * a non-graceful {@code Shutdown} or the end of a drain stopped it ({@code
     * Cancelled}); retryable either way.
     */
    public static final String WORKER_SHUTTING_DOWN = "WORKER_SHUTTING_DOWN";

    private ErrorCodes() {}
}
