package io.triopipe.worker.protocol;

/** Quoting of received values in error messages. */
final class Text {
    private static final int MAX_QUOTED = 64;

    private Text() {}

    /** {@code 'value'}, cut to 64 characters: a hostile frame cannot flood the log. */
    static String quote(String value) {
        String cut = value.length() > MAX_QUOTED ? value.substring(0, MAX_QUOTED) + "..." : value;
        return "'" + cut + "'";
    }
}
