package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * A worker's wish to get no new tasks for now, or to get them again.
 *
 * @param workerId the worker's id
 * @param currentLoad by convention active tasks / maximum concurrency, 0.0 to 1.0
 * @param shouldThrottle true: send no new tasks; false: tasks are welcome again
 * @param draining true: the worker is shutting down and takes no new task for the rest
 *     of the connection (sent with {@code shouldThrottle} true); written only when true
 */
public record BackpressureSignal(String workerId, double currentLoad, boolean shouldThrottle, boolean draining) {
    /**
     * Validates the components.
     *
     * @throws IllegalArgumentException if the load is a NaN or an infinity
     */
    public BackpressureSignal {
        Objects.requireNonNull(workerId, "workerId");
        if (!Double.isFinite(currentLoad)) {
            throw new IllegalArgumentException("currentLoad must be finite, got " + currentLoad);
        }
    }

    /**
     * A signal of a worker that is not draining.
     *
     * @param workerId the worker's id
     * @param currentLoad by convention active tasks / maximum concurrency
     * @param shouldThrottle true: send no new tasks; false: tasks are welcome again
     */
    public BackpressureSignal(String workerId, double currentLoad, boolean shouldThrottle) {
        this(workerId, currentLoad, shouldThrottle, false);
    }
}
