package io.triopipe.worker.protocol;

import java.util.Locale;
import java.util.function.Function;

/** Liberal matching of enum values: case and underscores do not matter. */
final class WireEnums {
    private WireEnums() {}

    static <E> E lookup(E[] values, Function<E, String> wireName, String name, String what) {
        String wanted = fold(name);
        for (E value : values) {
            if (fold(wireName.apply(value)).equals(wanted)) {
                return value;
            }
        }
        throw new IllegalArgumentException("unknown " + what + " " + Text.quote(name));
    }

    private static String fold(String name) {
        return name.replace("_", "").toLowerCase(Locale.ROOT);
    }
}
