package io.triopipe.worker.protocol;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.NullNode;

/** Checks on opaque JSON values (payloads). */
final class JsonValues {
    private JsonValues() {}

    /** The value, or JSON {@code null} for a Java {@code null}. */
    static JsonNode orNull(JsonNode value) {
        return value == null ? NullNode.getInstance() : value;
    }

    /**
     * Rejects NaN and infinities anywhere in {@code value}: they are not JSON (a
     * fractional number too large for a double, such as {@code 1e999}, reads as an
     * infinity). Integers of any size are fine.
     */
    static JsonNode requireFinite(JsonNode value) {
        if (value.isFloatingPointNumber() && !Double.isFinite(value.doubleValue())) {
            throw new IllegalArgumentException("number " + value + " is out of range");
        }
        if (value.isContainerNode()) {
            for (JsonNode child : value) {
                requireFinite(child);
            }
        }
        return value;
    }
}
