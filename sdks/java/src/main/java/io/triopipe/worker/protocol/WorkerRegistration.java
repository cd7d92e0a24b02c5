package io.triopipe.worker.protocol;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * How a worker describes itself when it registers.
 *
 * @param workerId the worker's name, unique in the pool (see {@link #checkWorkerId})
 * @param supportedTasks the task types the worker runs
 * @param maxConcurrency how many tasks the worker runs at once, at least 1
 * @param language the worker's implementation language, for display
 * @param tags labels that tasks can be routed by
 * @param maxConcurrencyByType how many tasks of a type the worker runs at once (each from
 *     1 to {@code maxConcurrency}), in its own order; types not listed are limited by
 *     {@code maxConcurrency} alone. Written only when not empty.
 */
public record WorkerRegistration(
        String workerId,
        List<String> supportedTasks,
        long maxConcurrency,
        String language,
        List<String> tags,
        Map<String, Long> maxConcurrencyByType) {

    private static final Pattern WORKER_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

    /**
     * Validates the components and copies the lists and the map (keeping its order).
     *
     * @throws IllegalArgumentException if the worker id is invalid, {@code
     *     maxConcurrency} is below 1, or a per-type limit is below 1 or above {@code
     *     maxConcurrency}
     */
    public WorkerRegistration {
        checkWorkerId(workerId);
        supportedTasks = List.copyOf(supportedTasks);
        NonNegative.atLeast("maxConcurrency", maxConcurrency, 1);
        Objects.requireNonNull(language, "language");
        tags = List.copyOf(tags);
        Map<String, Long> limits = new LinkedHashMap<>();
        maxConcurrencyByType.forEach((type, limit) -> {
            Objects.requireNonNull(type, "maxConcurrencyByType key");
            Objects.requireNonNull(limit, "maxConcurrencyByType value");
            String field = "maxConcurrencyByType[" + Text.quote(type) + "]";
            NonNegative.atLeast(field, limit, 1);
            if (limit > maxConcurrency) {
                throw new IllegalArgumentException(
                        field + " must be <= maxConcurrency (" + maxConcurrency + "), got " + limit);
            }
            limits.put(type, limit);
        });
        maxConcurrencyByType = Collections.unmodifiableMap(limits);
    }

    /**
     * A registration without per-type limits.
     *
     * @param workerId the worker's name
     * @param supportedTasks the task types the worker runs
     * @param maxConcurrency how many tasks the worker runs at once, at least 1
     * @param language the worker's implementation language
     * @param tags labels that tasks can be routed by
     */
    public WorkerRegistration(
            String workerId, List<String> supportedTasks, long maxConcurrency, String language, List<String> tags) {
        this(workerId, supportedTasks, maxConcurrency, language, tags, Map.of());
    }

    /**
     * Checks the syntax of a worker id: 1 to 128 characters from
     * {@code A-Z a-z 0-9 . _ -}, starting with a letter or a digit.
     *
     * @param workerId the id to check
     * @return {@code workerId}
     * @throws IllegalArgumentException if it does not match
     */
    public static String checkWorkerId(String workerId) {
        Objects.requireNonNull(workerId, "workerId");
        if (!WORKER_ID.matcher(workerId).matches()) {
            throw new IllegalArgumentException("invalid worker id "
                    + Text.quote(workerId)
                    + ": expected 1-128 characters of [A-Za-z0-9._-]"
                    + " starting with a letter or digit");
        }
        return workerId;
    }
}
