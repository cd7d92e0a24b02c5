package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * Worker to dispatcher: send me no new tasks for now, or: I can take tasks again.
 *
 * @param signal the worker's load and wish
 */
public record Backpressure(BackpressureSignal signal) implements Message {
    /** Validates the components. */
    public Backpressure {
        Objects.requireNonNull(signal, "signal");
    }

    @Override
    public String type() {
        return "Backpressure";
    }
}
