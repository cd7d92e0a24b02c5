package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * Dispatcher to worker: run a task.
 *
 * @param task the task to run
 */
public record TaskDispatch(Task task) implements Message {
    /** Validates the components. */
    public TaskDispatch {
        Objects.requireNonNull(task, "task");
    }

    @Override
    public String type() {
        return "TaskDispatch";
    }
}
