package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * Worker to dispatcher: the first message of a WebSocket worker.
 *
 * @param registration who the worker is and what it runs
 */
public record WorkerRegister(WorkerRegistration registration) implements Message {
    /** Validates the components. */
    public WorkerRegister {
        Objects.requireNonNull(registration, "registration");
    }

    @Override
    public String type() {
        return "WorkerRegister";
    }
}
