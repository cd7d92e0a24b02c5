package io.triopipe.worker;

import java.util.Objects;

/**
 * Thrown by a handler to fail its task with a chosen error code.
 *
 * <p>Any other exception fails the task with {@link ErrorCodes#HANDLER_ERROR}
 * (retryable); this one says precisely what went wrong and whether a retry can help:
 *
 * <pre>{@code
 * throw new TaskFailure("BAD_INPUT", "url must be absolute", false);
 * }</pre>
 */
public class TaskFailure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String code;
    private final boolean retryable;

    /**
     * Creates the failure.
     *
     * @param code the error code, {@code UPPER_SNAKE_CASE} by convention
     * @param message a human-readable explanation
     * @param retryable whether trying again (possibly elsewhere) may succeed
     */
    public TaskFailure(String code, String message, boolean retryable) {
        super(Objects.requireNonNull(message, "message"));
        this.code = Objects.requireNonNull(code, "code");
        this.retryable = retryable;
    }

    /**
     * The error code.
     *
     * @return the code reported in the task's error
     */
    public String code() {
        return code;
    }

    /**
     * Whether the dispatcher may retry the task.
     *
     * @return the {@code retryable} flag reported in the task's error
     */
    public boolean retryable() {
        return retryable;
    }
}
