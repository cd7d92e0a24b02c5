package io.triopipe.worker.protocol;

import java.util.Objects;
import java.util.UUID;

/**
 * Dispatcher to worker: stop one task now and report it.
 *
 * @param taskId the task to stop
 * @param reason why, for logs (may be empty)
 */
public record Kill(UUID taskId, String reason) implements Message {
    /** Validates the components. */
    public Kill {
        Objects.requireNonNull(taskId, "taskId");
        Objects.requireNonNull(reason, "reason");
    }

    @Override
    public String type() {
        return "Kill";
    }
}
