package io.triopipe.worker.protocol;

/**
 * How far a running task has come, as a handler reports it.
 *
 * @param fraction the part done, from 0 to 1, or {@code null} when unknown
 * @param message what the task is doing, or {@code null}
 */
public record TaskProgress(Double fraction, String message) {
    /**
     * Validates the fraction.
     *
     * @throws IllegalArgumentException if the fraction is not a number from 0 to 1
     */
    public TaskProgress {
        if (fraction != null && !(fraction >= 0.0 && fraction <= 1.0)) {
            throw new IllegalArgumentException("fraction must be from 0 to 1, got " + fraction);
        }
    }
}
