package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * Dispatcher to worker: the registration is accepted; tasks may follow.
 *
 * @param workerId the id under which the dispatcher knows the worker
 */
public record WorkerRegistered(String workerId) implements Message {
    /** Validates the components. */
    public WorkerRegistered {
        Objects.requireNonNull(workerId, "workerId");
    }

    @Override
    public String type() {
        return "WorkerRegistered";
    }
}
