package io.triopipe.worker.protocol;

import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * Liberal matching of enum values, exactly as docs/protocol.md ("Enum") allows: the
 * PascalCase wire name or, for a name of several words, its snake_case ({@code "TimedOut"},
 * {@code "timed_out"}), in any ASCII case. No other separator, no underscore elsewhere, and
 * no non-ASCII letter, which {@code equalsIgnoreCase} or a Unicode case mapping could take
 * for an ASCII one ({@code "\u0130"} for {@code "i"}, the Kelvin sign for {@code "k"}).
 */
final class WireEnums {
    private WireEnums() {}

    /**
     * The table {@link #lookup} reads: every accepted spelling, in lower case, of each value.
     *
     * @param values the enum's values
     * @param wireName the PascalCase name of a value
     * @param <E> the enum
     * @return the values by lower-case spelling
     */
    static <E> Map<String, E> spellings(E[] values, Function<E, String> wireName) {
        Map<String, E> table = new HashMap<>();
        for (E value : values) {
            String name = wireName.apply(value);
            table.put(name.toLowerCase(Locale.ROOT), value);
            table.put(snakeCase(name), value);
        }
        return Map.copyOf(table);
    }

    static <E> E lookup(Map<String, E> spellings, String name, String what) {
        String key = asciiLower(name);
        E found = key == null ? null : spellings.get(key);
        if (found == null) {
            throw new IllegalArgumentException("unknown " + what + " " + Text.quote(name));
        }
        return found;
    }

    /**
     * The text in lower case if it is ASCII only, so that only A-Z are folded.
     *
     * @param text a name as received
     * @return its lower case, or null if it is not ASCII
     */
    static String asciiLower(String text) {
        for (int i = 0; i < text.length(); i++) {
            if (text.charAt(i) >= 0x80) {
                return null;
            }
        }
        return text.toLowerCase(Locale.ROOT);
    }

    /** "TimedOut" to "timed_out": an underscore before each word after the first. */
    private static String snakeCase(String name) {
        StringBuilder snake = new StringBuilder(name.length() + 2);
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            char previous = i == 0 ? ' ' : name.charAt(i - 1);
            boolean wordEnds = previous >= 'a' && previous <= 'z' || previous >= '0' && previous <= '9';
            if (c >= 'A' && c <= 'Z' && wordEnds) {
                snake.append('_');
            }
            snake.append(c);
        }
        return snake.toString().toLowerCase(Locale.ROOT);
    }
}
