package io.triopipe.worker;

import io.triopipe.worker.protocol.Task;
import io.triopipe.worker.protocol.TaskProgress;
import java.time.Duration;
import java.time.Instant;
import java.util.Objects;

/**
 * What a handler knows about the task it runs, and how it reports on a long one: {@link
 * #progress} and {@link #extendDeadline}.
 */
public final class TaskContext {
    private final Execution execution;
    private final String workerId;
    private volatile Instant deadline;
    private volatile boolean cancelled;

    TaskContext(Execution execution, Instant deadline, String workerId) {
        this.execution = execution;
        this.deadline = deadline;
        this.workerId = workerId;
    }

    /**
     * The task: its id, type, raw payload and metadata ({@code traceId}, {@code
     * retryCount}, ...), with the idempotency key and the fencing token ({@code epoch},
     * {@code attempt}) to pass on to the systems the handler writes to, when the
     * dispatcher sends them (see {@link io.triopipe.worker.protocol.TaskMetadata}).
     *
     * @return the task as dispatched
     */
    public Task task() {
        return execution.task();
    }

    /**
     * When the task times out: its receipt plus its {@code timeoutMs}, or later after
     * {@link #extendDeadline}.
     *
     * @return the deadline, after which the handler's thread is interrupted
     */
    public Instant deadline() {
        return deadline;
    }

    /**
     * The id of the worker running the task.
     *
     * @return the worker id
     */
    public String workerId() {
        return workerId;
    }

    /**
     * Whether the task has been stopped ({@code Kill}, deadline, non-graceful shutdown,
     * the end of a drain, lost connection). The handler's thread is interrupted at the
     * same moment; a handler that computes without blocking should check this now and
     * then and return.
     *
     * @return true once the task is stopped
     */
    public boolean isCancelled() {
        return cancelled;
    }

    /**
     * Reports how far the task has come: a {@code Running} result with {@code progress},
     * which the dispatcher surfaces, in order, as a task event and on the task's handle.
     * Returns at once; does nothing once the task is stopped.
     *
     * @param fraction the part done, from 0 to 1
     * @param message what the task is doing, or {@code null}
     * @throws IllegalArgumentException if {@code fraction} is not from 0 to 1
     */
    public void progress(double fraction, String message) {
        execution.report(new TaskProgress(fraction, message), null);
    }

    /**
     * Reports what the task is doing, without a fraction ({@code "fraction": null}).
     *
     * @param message what the task is doing
     * @see #progress(double, String)
     */
    public void progress(String message) {
        execution.report(new TaskProgress(null, Objects.requireNonNull(message, "message")), null);
    }

    /**
     * Asks for more time: sends a {@code Running} result with {@code extendMs} ("let my
     * deadline be now + extension"), and moves this worker's own deadline for the task
     * to now + {@code extension} (never earlier than it was). The dispatcher grants the
     * extension only if the task's type allows it, up to a maximum; if it refuses, its
     * {@code Kill} at the old deadline stops the task. Returns at once; does nothing once
     * the task is stopped.
     *
     * @param extension how long from now the task may still run, rounded up to whole
     *     milliseconds
     * @throws IllegalArgumentException if {@code extension} is not positive
     */
    public void extendDeadline(Duration extension) {
        if (extension.isNegative() || extension.isZero()) {
            throw new IllegalArgumentException("extension must be positive, got " + extension);
        }
        execution.report(null, extension.plusNanos(999_999).toMillis());
    }

    void setDeadline(Instant deadline) {
        this.deadline = deadline;
    }

    void cancel() {
        cancelled = true;
    }
}
