package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * Worker to dispatcher: alive, and this busy.
 *
 * @param payload the worker's current state
 */
public record Heartbeat(HeartbeatPayload payload) implements Message {
    /** Validates the components. */
    public Heartbeat {
        Objects.requireNonNull(payload, "payload");
    }

    @Override
    public String type() {
        return "Heartbeat";
    }
}
