package io.triopipe.worker.protocol;

import java.time.DateTimeException;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** RFC 3339 timestamps: any offset on input, UTC with microseconds on output. */
final class Timestamps {
    private static final Pattern RFC_3339 = Pattern.compile("(\\d{4})-(\\d{2})-(\\d{2})"
            + "(?:[Tt ](\\d{2}):(\\d{2})(?::(\\d{2})(?:[.,](\\d+))?)?"
            + "(?:[Zz]|([+-])(\\d{2}):?(\\d{2}))?)?");
    private static final DateTimeFormatter SECONDS = DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss");
    private static final Instant MIN = Instant.parse("0001-01-01T00:00:00Z");
    private static final Instant MAX = Instant.parse("9999-12-31T23:59:59.999999Z");

    private Timestamps() {}

    /**
     * Parses a timestamp; a missing offset means UTC, digits past the microsecond are
     * truncated.
     *
     * @throws IllegalArgumentException if it is not a timestamp, or is out of range
     */
    static Instant parse(String text) {
        Matcher m = RFC_3339.matcher(text);
        if (!m.matches()) {
            throw notATimestamp(text);
        }
        LocalDateTime local;
        ZoneOffset offset;
        try {
            local = LocalDateTime.of(
                    number(m.group(1)),
                    number(m.group(2)),
                    number(m.group(3)),
                    number(m.group(4)),
                    number(m.group(5)),
                    number(m.group(6)),
                    micros(m.group(7)) * 1000);
            offset = offset(m.group(8), m.group(9), m.group(10));
        } catch (DateTimeException e) {
            throw notATimestamp(text);
        }
        return requireInRange(local.toInstant(offset));
    }

    /** {@code 2025-03-14T09:26:53Z}, or {@code 2025-03-14T09:26:53.250000Z}. */
    static String format(Instant instant) {
        LocalDateTime utc = LocalDateTime.ofInstant(instant, ZoneOffset.UTC);
        int micros = utc.getNano() / 1000;
        String fraction = micros == 0 ? "" : String.format(".%06d", micros);
        return SECONDS.format(utc) + fraction + "Z";
    }

    /** The instant, if its UTC date is in the years 1 to 9999. */
    static Instant requireInRange(Instant instant) {
        if (instant.isBefore(MIN) || instant.isAfter(MAX)) {
            throw new IllegalArgumentException("date value out of range");
        }
        return instant;
    }

    private static int number(String digits) {
        return digits == null ? 0 : Integer.parseInt(digits);
    }

    private static int micros(String fraction) {
        if (fraction == null) {
            return 0;
        }
        String six = (fraction + "00000").substring(0, 6);
        return Integer.parseInt(six);
    }

    private static ZoneOffset offset(String sign, String hours, String minutes) {
        if (sign == null) {
            return ZoneOffset.UTC;
        }
        int direction = sign.equals("-") ? -1 : 1;
        return ZoneOffset.ofHoursMinutes(direction * number(hours), direction * number(minutes));
    }

    private static IllegalArgumentException notATimestamp(String text) {
        return new IllegalArgumentException("not an RFC 3339 timestamp: " + Text.quote(text));
    }
}
