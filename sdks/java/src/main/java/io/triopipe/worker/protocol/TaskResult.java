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
 */
public record TaskResult(
        UUID taskId, TaskStatus status, JsonNode payload, TaskError error, long durationMs, String workerId) {
    /**
     * Validates the components; a Java {@code null} payload becomes JSON {@code null}.
     *
     * @throws IllegalArgumentException if the payload holds a NaN or an infinity, or
     *     the duration is negative
     */
    public TaskResult {
        Objects.requireNonNull(taskId, "taskId");
        Objects.requireNonNull(status, "status");
        payload = JsonValues.requireFinite(JsonValues.orNull(payload));
        NonNegative.check("durationMs", durationMs);
        Objects.requireNonNull(workerId, "workerId");
    }
}
