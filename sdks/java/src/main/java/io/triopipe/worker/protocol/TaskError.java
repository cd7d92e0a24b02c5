package io.triopipe.worker.protocol;

import java.util.Objects;

/**
 * Why a task did not complete.
 *
 * @param code a machine-readable code, {@code UPPER_SNAKE_CASE} by convention
 * @param message a human-readable explanation
 * @param retryable whether trying again (possibly elsewhere) may succeed
 */
public record TaskError(String code, String message, boolean retryable) {
    /** Validates the components. */
    public TaskError {
        Objects.requireNonNull(code, "code");
        Objects.requireNonNull(message, "message");
    }
}
