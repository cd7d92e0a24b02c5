package io.triopipe.worker.protocol;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Objects;
import java.util.UUID;

/**
 * What a worker reports about one task.
 *
 * @param taskId the id of the task
 * @param status a terminal status, or {@link TaskStatus#RUNNING} for a progress report
 * @param payload the handler's result when completed (JSON {@code null} otherwise)
 * @param error why the task did not complete, or {@code null}
 * @param durationMs how long the worker spent on the task
 * @param workerId the reporting worker's id
 * @param progress how far the task has come, or {@code null}; only in a progress report
 * @param extendMs "let my deadline be now + extendMs", at least 1, or {@code null}; only
 *     in a progress report
 */
public record TaskResult(
        UUID taskId,
        TaskStatus status,
        JsonNode payload,
        TaskError error,
        long durationMs,
        String workerId,
        TaskProgress progress,
        Long extendMs) {
    /**
     * Validates the components; a Java {@code null} payload becomes JSON {@code null}.
     *
     * @throws IllegalArgumentException if the payload holds a NaN or an infinity, the
     *     duration is negative, {@code extendMs} is below 1, or a terminal result carries
     *     progress or {@code extendMs}
     */
    public TaskResult {
        Objects.requireNonNull(taskId, "taskId");
        Objects.requireNonNull(status, "status");
        payload = JsonValues.requireFinite(JsonValues.orNull(payload));
        NonNegative.check("durationMs", durationMs);
        Objects.requireNonNull(workerId, "workerId");
        if (extendMs != null) {
            NonNegative.atLeast("extendMs", extendMs, 1);
        }
        if (status.isTerminal() && (progress != null || extendMs != null)) {
            throw new IllegalArgumentException("a " + status.wireName() + " result carries no progress or extendMs");
        }
    }

    /**
     * A result without progress or deadline extension (every terminal result).
     *
     * @param taskId the id of the task
     * @param status the task's status
     * @param payload the handler's result when completed
     * @param error why the task did not complete, or {@code null}
     * @param durationMs how long the worker spent on the task
     * @param workerId the reporting worker's id
     */
    public TaskResult(
            UUID taskId, TaskStatus status, JsonNode payload, TaskError error, long durationMs, String workerId) {
        this(taskId, status, payload, error, durationMs, workerId, null, null);
    }
}
