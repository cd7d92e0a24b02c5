package io.triopipe.worker.protocol;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Objects;
import java.util.UUID;

/**
 * One unit of work.
 *
 * @param id the task's identity, the same across retries
 * @param taskType the kind of work, which selects the handler
 * @param payload the handler's input (JSON {@code null} when there is none)
 * @param metadata scheduling information
 */
public record Task(UUID id, String taskType, JsonNode payload, TaskMetadata metadata) {
    /**
     * Validates the components; a Java {@code null} payload becomes JSON {@code null}.
     *
     * @throws IllegalArgumentException if the payload holds a NaN or an infinity
     */
    public Task {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(taskType, "taskType");
        payload = JsonValues.requireFinite(JsonValues.orNull(payload));
        Objects.requireNonNull(metadata, "metadata");
    }
}
