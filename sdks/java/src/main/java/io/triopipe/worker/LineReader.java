package io.triopipe.worker;

import static java.lang.System.Logger.Level.WARNING;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * Newline-terminated UTF-8 lines from a byte stream, without the newline. A line longer
 * than the limit is dropped up to its newline, never buffered whole.
 */
final class LineReader {
    private static final System.Logger LOG = System.getLogger("io.triopipe.worker");

    private final InputStream in;
    private final int maxLineBytes;
    private final byte[] buffer = new byte[64 * 1024];
    private final ByteArrayOutputStream line = new ByteArrayOutputStream();
    private int start;
    private int end;

    LineReader(InputStream in, int maxLineBytes) {
        this.in = in;
        this.maxLineBytes = maxLineBytes;
    }

    /** The next line, or {@code null} at end of input (after a last unterminated line). */
    String readLine() throws IOException {
        boolean skipping = false;
        while (true) {
            if (start == end && !fill()) {
                return line.size() > 0 && !skipping ? take() : null;
            }
            int newline = indexOfNewline();
            int stop = newline < 0 ? end : newline;
            if (!skipping && line.size() + (stop - start) > maxLineBytes) {
                LOG.log(WARNING, "skipping a line of more than {0} bytes on stdin", maxLineBytes);
                skipping = true;
                line.reset();
            }
            if (!skipping) {
                line.write(buffer, start, stop - start);
            }
            start = newline < 0 ? end : newline + 1;
            if (newline >= 0) {
                if (!skipping) {
                    return take();
                }
                skipping = false;
            }
        }
    }

    private boolean fill() throws IOException {
        int count = in.read(buffer);
        start = 0;
        end = Math.max(count, 0);
        return count > 0;
    }

    private int indexOfNewline() {
        for (int i = start; i < end; i++) {
            if (buffer[i] == '\n') {
                return i;
            }
        }
        return -1;
    }

    private String take() {
        String text = line.toString(StandardCharsets.UTF_8);
        line.reset();
        return text;
    }
}
