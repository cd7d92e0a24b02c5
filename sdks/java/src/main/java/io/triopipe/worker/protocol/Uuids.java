package io.triopipe.worker.protocol;

import java.util.UUID;

/** UUIDs in the usual spellings on input: hyphens, braces, {@code urn:uuid:}, any case. */
final class Uuids {
    private static final int HEX_DIGITS = 32;

    private Uuids() {}

    /**
     * Parses a UUID.
     *
     * @throws IllegalArgumentException if it is not one
     */
    static UUID parse(String text) {
        String hex = text.replace("urn:", "").replace("uuid:", "");
        hex = stripBraces(hex).replace("-", "");
        if (hex.length() != HEX_DIGITS || !hex.chars().allMatch(Uuids::isHexDigit)) {
            throw new IllegalArgumentException("not a UUID: " + Text.quote(text));
        }
        return new UUID(
                Long.parseUnsignedLong(hex.substring(0, 16), 16), Long.parseUnsignedLong(hex.substring(16), 16));
    }

    private static String stripBraces(String text) {
        int start = 0;
        int end = text.length();
        while (start < end && isBrace(text.charAt(start))) {
            start++;
        }
        while (end > start && isBrace(text.charAt(end - 1))) {
            end--;
        }
        return text.substring(start, end);
    }

    private static boolean isBrace(char c) {
        return c == '{' || c == '}';
    }

    private static boolean isHexDigit(int c) {
        return Character.digit(c, 16) >= 0 && c < 128;
    }
}
