package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * A worker's state, sent with every heartbeat.
 *
 * @param workerId the worker's id
 * @param activeTasks the tasks received and not yet reported with a terminal result
 * @param capacity the worker's maximum concurrency (not its free slots)
 * @param uptimeSeconds seconds since the worker started
 */
public record HeartbeatPayload(String workerId, long activeTasks, long capacity, long uptimeSeconds) {
    /**
     * Validates the components.
     *
     * @throws IllegalArgumentException if a count is negative
     */
    public HeartbeatPayload {
        Objects.requireNonNull(workerId, "workerId");
        NonNegative.check("activeTasks", activeTasks);
        NonNegative.check("capacity", capacity);
        NonNegative.check("uptimeSeconds", uptimeSeconds);
    }
}
