package io.triopipe.worker.protocol;

import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Objects;

/**
 * Scheduling information of a task.
 *
 * @param createdAt when the task was created, kept to the microsecond
 * @param timeoutMs the time the worker has for this try, counted from receipt
 * @param priority the task's priority in the dispatcher's queue
 * @param retryCount how many earlier tries failed and were retried
 * @param maxRetries how many times a retryable failure may be retried
 * @param traceId an opaque id for correlating logs, or {@code null}
 */
public record TaskMetadata(
        Instant createdAt, long timeoutMs, Priority priority, long retryCount, long maxRetries, String traceId) {

    /** The default {@code timeoutMs}: five minutes. */
    public static final long DEFAULT_TIMEOUT_MS = 300_000;

    /** The default {@code maxRetries}. */
    public static final long DEFAULT_MAX_RETRIES = 3;

    /**
     * Validates the components and truncates {@code createdAt} to the microsecond.
     *
     * @throws IllegalArgumentException if a count is negative or the time is outside
     *     the years 1 to 9999 (UTC)
     */
    public TaskMetadata {
        createdAt = Timestamps.requireInRange(createdAt).truncatedTo(ChronoUnit.MICROS);
        Objects.requireNonNull(priority, "priority");
        NonNegative.check("timeoutMs", timeoutMs);
        NonNegative.check("retryCount", retryCount);
        NonNegative.check("maxRetries", maxRetries);
    }

    /**
     * Metadata with every default: created now, five minutes, normal priority, a first
     * try, three retries, no trace id.
     *
     * @return the default metadata
     */
    public static TaskMetadata defaults() {
        return new TaskMetadata(Instant.now(), DEFAULT_TIMEOUT_MS, Priority.NORMAL, 0, DEFAULT_MAX_RETRIES, null);
    }
}
