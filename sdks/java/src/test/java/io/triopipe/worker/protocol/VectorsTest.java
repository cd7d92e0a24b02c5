package io.triopipe.worker.protocol;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared test vectors of spec/vectors, read in place: every valid message decodes
 * and encodes back byte for byte (and to the same JSON value), every lenient input
 * encodes to its canonical text, every invalid input is rejected naming the same path
 * (and an out-of-range value with the same words).
 */
class VectorsTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Path VECTORS = Path.of(System.getProperty("trio.pipe.spec", "../../spec"), "vectors");
    private static final Pattern PATH = Pattern.compile(" @ (\\$[^ ]*)$");

    @TestFactory
    Stream<DynamicTest> validMessagesRoundTrip() throws IOException {
        return vectors("valid.json")
                .map(vector -> DynamicTest.dynamicTest(name(vector), () -> {
                    String message = vector.get("message").textValue();
                    String encoded = Codec.encode(Codec.decode(message));
                    assertEquals(message, encoded);
                    assertEquals(vector.get("decoded"), JSON.readTree(encoded));
                }));
    }

    @TestFactory
    Stream<DynamicTest> lenientInputsBecomeCanonical() throws IOException {
        return vectors("lenient.json")
                .map(vector -> DynamicTest.dynamicTest(name(vector), () -> {
                    String canonical = vector.get("canonical").textValue();
                    String encoded =
                            Codec.encode(Codec.decode(vector.get("input").textValue()));
                    assertEquals(canonical, encoded);
                    assertEquals(JSON.readTree(canonical), JSON.readTree(encoded));
                }));
    }

    @TestFactory
    Stream<DynamicTest> invalidInputsAreRejected() throws IOException {
        return vectors("invalid.json")
                .map(vector -> DynamicTest.dynamicTest(name(vector), () -> {
                    ProtocolException rejected = assertThrows(
                            ProtocolException.class,
                            () -> Codec.decode(vector.get("input").textValue()));
                    String reason = vector.get("reason_contains").textValue();
                    if (vector.get("class").textValue().equals("out of range")) { // worded alike
                        assertTrue(
                                rejected.getMessage().contains(reason),
                                () -> "the reason should say " + reason + ": " + rejected.getMessage());
                    }
                    Matcher path = PATH.matcher(reason);
                    if (path.find()) {
                        assertTrue(
                                rejected.getMessage().contains(" @ " + path.group(1)),
                                () -> "the reason should name " + path.group(1) + ": " + rejected.getMessage());
                    }
                }));
    }

    private static Stream<JsonNode> vectors(String file) throws IOException {
        JsonNode all = JSON.readTree(VECTORS.resolve(file).toFile());
        List<JsonNode> list = StreamSupport.stream(all.spliterator(), false).toList();
        assertTrue(list.size() > 10, () -> file + " holds " + list.size() + " vectors");
        return list.stream();
    }

    private static String name(JsonNode vector) {
        return vector.get("name").textValue();
    }
}
