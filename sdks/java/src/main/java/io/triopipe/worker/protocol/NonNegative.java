package io.triopipe.worker.protocol;

/** The range check of the protocol's integer fields. */
final class NonNegative {
    private NonNegative() {}

    static void check(String field, long value) {
        atLeast(field, value, 0);
    }

    static void atLeast(String field, long value, long minimum) {
        if (value < minimum) {
            throw new IllegalArgumentException(field + " must be >= " + minimum + ", got " + value);
        }
    }
}
