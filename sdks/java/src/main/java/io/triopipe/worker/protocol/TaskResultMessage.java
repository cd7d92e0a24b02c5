package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * Worker to dispatcher: the outcome of a task, or a progress report (type tag
 * {@code "TaskResult"}).
 *
 * @param result what happened to the task
 */
public record TaskResultMessage(TaskResult result) implements Message {
    /** Validates the components. */
    public TaskResultMessage {
        Objects.requireNonNull(result, "result");
    }

    @Override
    public String type() {
        return "TaskResult";
    }
}
