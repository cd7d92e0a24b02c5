package io.triopipe.worker.protocol;

/**
 * Dispatcher to worker: the answer to every {@link Heartbeat}.
 *
 * <p>It has no fields.
 */
public record HeartbeatAck() implements Message {
    @Override
    public String type() {
        return "HeartbeatAck";
    }
}
