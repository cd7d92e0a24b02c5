package io.triopipe.worker.protocol;

import java.util.List;
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
 */
public record WorkerRegistration(
        String workerId, List<String> supportedTasks, long maxConcurrency, String language, List<String> tags) {

    private static final Pattern WORKER_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

    /**
     * Validates the components and copies the lists.
     *
     * @throws IllegalArgumentException if the worker id is invalid or
     *     {@code maxConcurrency} is below 1
     */
    public WorkerRegistration {
        checkWorkerId(workerId);
        supportedTasks = List.copyOf(supportedTasks);
        NonNegative.atLeast("maxConcurrency", maxConcurrency, 1);
        Objects.requireNonNull(language, "language");
        tags = List.copyOf(tags);
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
