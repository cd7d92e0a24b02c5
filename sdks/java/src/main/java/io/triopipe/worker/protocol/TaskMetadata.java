package io.triopipe.worker.protocol;

import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Objects;

/**
 * Scheduling information of a task.
 *
 * <p>The last three components are extensions of the protocol (not in rust-pipe v0.1),
 * {@code null} when the dispatcher did not send them and written only when set. A
 * handler may pass them on to the systems it writes to: {@code idempotencyKey} to make
 * its side effects happen once however often the task runs, and ({@code epoch}, {@code
 * attempt}), the fencing token of this try, so that a write from a superseded try can be
 * refused there.
 *
 * @param createdAt when the task was created, kept to the microsecond
 * @param timeoutMs the time the worker has for this try, counted from receipt
 * @param priority the task's priority in the dispatcher's queue
 * @param retryCount how many earlier tries failed and were retried
 * @param maxRetries how many times a retryable failure may be retried
 * @param traceId an opaque id for correlating logs, or {@code null}
 * @param idempotencyKey the submitter's key for the task (the dispatcher keeps one task
 *     per key), or {@code null}
 * @param attempt which try of the task this dispatch is, from 1, counted over the task's
 *     whole life (across retries and dispatcher restarts), or {@code null}
 * @param epoch the dispatcher's epoch, from 0, which grows each time a dispatcher opens
 *     the task store, or {@code null}
 */
public record TaskMetadata(
        Instant createdAt,
        long timeoutMs,
        Priority priority,
        long retryCount,
        long maxRetries,
        String traceId,
        String idempotencyKey,
        Long attempt,
        Long epoch) {

    /** The default {@code timeoutMs}: five minutes. */
    public static final long DEFAULT_TIMEOUT_MS = 300_000;

    /** The default {@code maxRetries}. */
    public static final long DEFAULT_MAX_RETRIES = 3;

    /**
     * Validates the components and truncates {@code createdAt} to the microsecond.
     *
     * @throws IllegalArgumentException if a count is negative, {@code attempt} is below
     *     1, {@code epoch} is negative, or the time is outside the years 1 to 9999 (UTC)
     */
    public TaskMetadata {
        createdAt = Timestamps.requireInRange(createdAt).truncatedTo(ChronoUnit.MICROS);
        Objects.requireNonNull(priority, "priority");
        NonNegative.check("timeoutMs", timeoutMs);
        NonNegative.check("retryCount", retryCount);
        NonNegative.check("maxRetries", maxRetries);
        if (attempt != null) {
            NonNegative.atLeast("attempt", attempt, 1);
        }
        if (epoch != null) {
            NonNegative.check("epoch", epoch);
        }
    }

    /**
     * Metadata without the extensions ({@code idempotencyKey}, {@code attempt}, {@code
     * epoch}): the shape of rust-pipe v0.1.
     *
     * @param createdAt when the task was created
     * @param timeoutMs the time the worker has for this try
     * @param priority the task's priority
     * @param retryCount how many earlier tries failed and were retried
     * @param maxRetries how many times a retryable failure may be retried
     * @param traceId an opaque id for correlating logs, or {@code null}
     */
    public TaskMetadata(
            Instant createdAt, long timeoutMs, Priority priority, long retryCount, long maxRetries, String traceId) {
        this(createdAt, timeoutMs, priority, retryCount, maxRetries, traceId, null, null, null);
    }

    /**
     * Metadata with every default: created now, five minutes, normal priority, a first
     * try, three retries, no trace id, no extension.
     *
     * @return the default metadata
     */
    public static TaskMetadata defaults() {
        return new TaskMetadata(Instant.now(), DEFAULT_TIMEOUT_MS, Priority.NORMAL, 0, DEFAULT_MAX_RETRIES, null);
    }
}
