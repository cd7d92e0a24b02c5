package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.triopipe.worker.examples.WordCountWorker;
import io.triopipe.worker.protocol.Shutdown;
import io.triopipe.worker.protocol.WorkerRegister;
import io.triopipe.worker.protocol.WorkerRegistered;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Every Java block of the README and of docs/sdk-java.md is code of an example that the
 * build compiles, and the README's worker works.
 */
class DocExamplesTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern JAVA_BLOCK = Pattern.compile("```java\\n(.*?)```", Pattern.DOTALL);
    private static final Path EXAMPLES = Path.of("src/examples/java");
    private static final List<Path> DOCS = List.of(Path.of("README.md"), Path.of("../../docs/sdk-java.md"));

    @Test
    void everyJavaBlockIsInAnExample() throws IOException {
        List<String> examples = new ArrayList<>();
        try (Stream<Path> files = Files.walk(EXAMPLES)) {
            for (Path file : files.filter(f -> f.toString().endsWith(".java")).toList()) {
                examples.add(normalise(Files.readString(file)));
            }
        }
        for (Path doc : DOCS) {
            Matcher blocks = JAVA_BLOCK.matcher(Files.readString(doc));
            int count = 0;
            while (blocks.find()) {
                String block = normalise(blocks.group(1));
                assertTrue(
                        examples.stream().anyMatch(e -> e.contains(block)),
                        () -> "not in an example (" + doc + "):\n" + block);
                count++;
            }
            assertTrue(count > 0, doc + " has Java blocks");
        }
    }

    @Test
    void theReadmeWorkerCountsWords() throws Exception {
        try (TestWebSocketServer server = new TestWebSocketServer(0)) {
            CompletableFuture<Void> outcome = CompletableFuture.runAsync(() -> {
                try {
                    WordCountWorker.main(new String[] {server.url().toString()});
                } catch (Exception e) {
                    throw new CompletionException(e);
                }
            });
            TestWebSocketServer.Connection connection = server.accept();
            connection.await(WorkerRegister.class, m -> true);
            connection.send(new WorkerRegistered("counter-1"));
            UUID id = connection.dispatch("word-count", JSON.readTree("{\"text\": \"a b  c\"}"));
            assertEquals(JSON.readTree("{\"words\": 3}"), connection.result(id).payload());
            connection.send(new Shutdown(true));
            outcome.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS);
        }
    }

    /** The lines without their indentation: a block may be indented less than in its file. */
    private static String normalise(String code) {
        return code.lines().map(String::strip).reduce("", (a, b) -> a + b + "\n");
    }
}
