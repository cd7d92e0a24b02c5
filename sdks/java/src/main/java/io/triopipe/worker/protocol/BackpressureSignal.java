package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * A worker's wish to get no new tasks for now, or to get them again.
 *
 * @param workerId the worker's id
 * @param currentLoad by convention active tasks / maximum concurrency, 0.0 to 1.0
 * @param shouldThrottle true: send no new tasks; false: tasks are welcome again
 */
public record BackpressureSignal(String workerId, double currentLoad, boolean shouldThrottle) {
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
}
