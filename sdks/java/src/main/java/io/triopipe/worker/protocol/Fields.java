package io.triopipe.worker.protocol;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * The members of one received JSON object, read by field name with the protocol's
 * rules: strict JSON types, defaults for missing optional fields. Each error names the
 * path of the bad value ({@code expected an integer, got a string @ $.payload.capacity}).
 */
final class Fields {
    private final JsonNode object;
    private final String path;

    private Fields(JsonNode object, String path) {
        this.object = object;
        this.path = path;
    }

    /** The object at {@code path}, or an error if {@code value} is not an object. */
    static Fields of(JsonNode value, String path) throws ProtocolException {
        if (!value.isObject()) {
            throw new ProtocolException("expected an object, got " + kind(value) + " @ " + path);
        }
        return new Fields(value, path);
    }

    /** The JSON type of a value, for error messages: {@code "a string"}, {@code "null"}. */
    static String kind(JsonNode value) {
        return switch (value.getNodeType()) {
            case OBJECT -> "an object";
            case ARRAY -> "an array";
            case STRING -> "a string";
            case NUMBER -> value.isIntegralNumber() ? "an integer" : "a number";
            case BOOLEAN -> "a boolean";
            case NULL -> "null";
            default -> value.getNodeType().name().toLowerCase(Locale.ROOT);
        };
    }

    /** Builds a value, turning a rejected component into an error at this path. */
    <T> T build(Supplier<T> constructor) throws ProtocolException {
        try {
            return constructor.get();
        } catch (IllegalArgumentException e) {
            throw new ProtocolException(e.getMessage() + " @ " + path);
        }
    }

    /** {@code name}, or {@code alias} when only the alias is present. */
    String aliased(String name, String alias) {
        return !object.has(name) && object.has(alias) ? alias : name;
    }

    /** A member that may be absent (Java {@code null}) or anything at all. */
    JsonNode raw(String name) {
        return object.get(name);
    }

    Fields object(String name) throws ProtocolException {
        return of(required(name), at(name));
    }

    /** An object member that may be absent or {@code null} (both read as {@code null}). */
    Fields objectOrNull(String name) throws ProtocolException {
        JsonNode value = object.get(name);
        return value == null || value.isNull() ? null : of(value, at(name));
    }

    String string(String name) throws ProtocolException {
        return text(name, required(name));
    }

    String string(String name, String fallback) throws ProtocolException {
        JsonNode value = object.get(name);
        return value == null ? fallback : text(name, value);
    }

    /** A string member that may be absent or {@code null} (both read as {@code null}). */
    String nullableString(String name) throws ProtocolException {
        JsonNode value = object.get(name);
        return value == null || value.isNull() ? null : text(name, value);
    }

    /** An integer of at least {@code minimum}: {@code 3.0}, {@code 1e3} and booleans are not. */
    long integer(String name, long fallback, long minimum) throws ProtocolException {
        JsonNode value = object.get(name);
        if (value == null) {
            return fallback;
        }
        if (!value.isIntegralNumber()) {
            throw mistyped(name, "an integer", value);
        }
        if (!value.canConvertToLong()) {
            throw invalid(name, name + " is out of range, got " + value);
        }
        long number = value.longValue();
        if (number < minimum) {
            throw invalid(name, name + " must be >= " + minimum + ", got " + number);
        }
        return number;
    }

    /** An integer of at least {@code minimum} that may be absent or {@code null} (both read as {@code null}). */
    Long nullableInteger(String name, long minimum) throws ProtocolException {
        JsonNode value = object.get(name);
        return value == null || value.isNull() ? null : integer(name, 0, minimum);
    }

    /**
     * An object whose members are all integers of at least {@code minimum}, in the order
     * received; {@code null}, and an absent member, read as empty.
     */
    Map<String, Long> integers(String name, long minimum) throws ProtocolException {
        JsonNode value = object.get(name);
        if (value == null || value.isNull()) {
            return Map.of();
        }
        Fields members = of(value, at(name));
        Map<String, Long> integers = new LinkedHashMap<>();
        for (Iterator<String> names = value.fieldNames(); names.hasNext(); ) {
            String member = names.next();
            integers.put(member, members.integer(member, 0, minimum));
        }
        return integers;
    }

    boolean bool(String name, boolean fallback) throws ProtocolException {
        JsonNode value = object.get(name);
        if (value == null) {
            return fallback;
        }
        if (!value.isBoolean()) {
            throw mistyped(name, "a boolean", value);
        }
        return value.booleanValue();
    }

    double number(String name, double fallback) throws ProtocolException {
        JsonNode value = object.get(name);
        if (value == null) {
            return fallback;
        }
        if (!value.isNumber()) {
            throw mistyped(name, "a number", value);
        }
        double number = value.doubleValue();
        if (!Double.isFinite(number)) {
            throw invalid(name, name + " is out of range, got " + value);
        }
        return number;
    }

    /** A finite number that may be absent or {@code null} (both read as {@code null}). */
    Double nullableNumber(String name) throws ProtocolException {
        JsonNode value = object.get(name);
        return value == null || value.isNull() ? null : number(name, 0.0);
    }

    UUID uuid(String name) throws ProtocolException {
        JsonNode value = required(name);
        if (!value.isTextual()) {
            throw mistyped(name, "a UUID string", value);
        }
        return parse(name, value.textValue(), Uuids::parse);
    }

    Instant timestamp(String name, Supplier<Instant> fallback) throws ProtocolException {
        JsonNode value = object.get(name);
        if (value == null) {
            return fallback.get();
        }
        if (!value.isTextual()) {
            throw mistyped(name, "an RFC 3339 timestamp", value);
        }
        return parse(name, value.textValue(), Timestamps::parse);
    }

    /** A required enum member, matched by {@code fromWire}. */
    <E> E enumValue(String name, String what, Function<String, E> fromWire) throws ProtocolException {
        return enumValue(name, what, fromWire, null, true);
    }

    /** An optional enum member, matched by {@code fromWire}. */
    <E> E enumValue(String name, String what, Function<String, E> fromWire, E fallback) throws ProtocolException {
        return enumValue(name, what, fromWire, fallback, false);
    }

    /** A list of strings; {@code null}, and an absent optional member, read as empty. */
    List<String> strings(String name, boolean required) throws ProtocolException {
        JsonNode value = required ? required(name) : object.get(name);
        if (value == null || value.isNull()) {
            return List.of();
        }
        if (!value.isArray()) {
            throw mistyped(name, "a list of strings", value);
        }
        List<String> strings = new ArrayList<>(value.size());
        for (JsonNode item : value) {
            if (!item.isTextual()) {
                throw invalid(name, "expected a list of strings, got " + kind(item) + " in it");
            }
            strings.add(item.textValue());
        }
        return strings;
    }

    private ProtocolException invalid(String name, String problem) {
        return new ProtocolException(problem + " @ " + at(name));
    }

    private <E> E enumValue(String name, String what, Function<String, E> fromWire, E fallback, boolean required)
            throws ProtocolException {
        JsonNode value = required ? required(name) : object.get(name);
        if (value == null) {
            return fallback;
        }
        if (!value.isTextual()) {
            throw mistyped(name, "a " + what + " string", value);
        }
        return parse(name, value.textValue(), fromWire);
    }

    private <T> T parse(String name, String text, Function<String, T> parser) throws ProtocolException {
        try {
            return parser.apply(text);
        } catch (IllegalArgumentException e) {
            throw invalid(name, e.getMessage());
        }
    }

    private JsonNode required(String name) throws ProtocolException {
        JsonNode value = object.get(name);
        if (value == null) {
            throw invalid(name, "required field missing");
        }
        return value;
    }

    private String text(String name, JsonNode value) throws ProtocolException {
        if (!value.isTextual()) {
            throw mistyped(name, "a string", value);
        }
        return value.textValue();
    }

    private ProtocolException mistyped(String name, String expected, JsonNode value) {
        return invalid(name, "expected " + expected + ", got " + kind(value));
    }

    private String at(String name) {
        return path + "." + name;
    }
}
