package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class LineReaderTest {
    private static List<String> lines(String input, int maxLineBytes) throws IOException {
        LineReader reader =
                new LineReader(new ByteArrayInputStream(input.getBytes(StandardCharsets.UTF_8)), maxLineBytes);
        List<String> lines = new ArrayList<>();
        for (String line = reader.readLine(); line != null; line = reader.readLine()) {
            lines.add(line);
        }
        assertNull(reader.readLine(), "end of input stays the end");
        return lines;
    }

    @Test
    void splitsOnNewlinesAndKeepsALastUnterminatedLine() throws IOException {
        assertEquals(List.of("one", "", "twé 🐍", "last"), lines("one\n\ntwé 🐍\nlast", 100));
    }

    @Test
    void readsLinesLongerThanItsBuffer() throws IOException {
        String longLine = "x".repeat(200_000);
        assertEquals(List.of(longLine, "next"), lines(longLine + "\nnext\n", 300_000));
    }

    @Test
    void dropsLinesOverTheLimitUpToTheirNewline() throws IOException {
        String tooLong = "y".repeat(200_000);
        assertEquals(List.of("short", "after"), lines("short\n" + tooLong + "\nafter\n" + tooLong, 1000));
    }

    @Test
    void aLineOfExactlyTheLimitIsKept() throws IOException {
        assertEquals(List.of("abcd"), lines("abcd\nabcde\n", 4));
    }
}
