package io.triopipe.worker;

import io.triopipe.worker.protocol.Task;
import java.time.Instant;

/** What a handler knows about the task it runs. */
public final class TaskContext {
    private final Task task;
    private final Instant deadline;
    private final String workerId;
    private volatile boolean cancelled;

    TaskContext(Task task, Instant deadline, String workerId) {
        this.task = task;
        this.deadline = deadline;
        this.workerId = workerId;
    }

    /**
     * The task: its id, type, raw payload and metadata ({@code traceId}, {@code
     * retryCount}, ...).
     *
     * @return the task as dispatched
     */
    public Task task() {
        return task;
    }

    /**
     * When the task times out: its receipt plus its {@code timeoutMs}.
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
     * lost connection). The handler's thread is interrupted at the same moment; a
     * handler that computes without blocking should check this now and then and return.
     *
     * @return true once the task is stopped
     */
    public boolean isCancelled() {
        return cancelled;
    }

    void cancel() {
        cancelled = true;
    }
}
