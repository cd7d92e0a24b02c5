package io.triopipe.worker.examples;

import io.triopipe.worker.Worker;
import java.net.URI;

/**
 * The README's worker: {@code java -cp ... io.triopipe.worker.examples.WordCountWorker
 * ws://127.0.0.1:9876}.
 */
public final class WordCountWorker {
    private WordCountWorker() {}

    record Text(String text) {}

    record Count(int words) {}

    public static void main(String[] args) throws Exception {
        Worker.builder()
                .workerId("counter-1")
                .maxConcurrency(4)
                .handle("word-count", Text.class, (ctx, in) -> new Count(in.text().split(" +").length))
                .build()
                .runWebSocket(URI.create(args[0])); // returns after the dispatcher's Shutdown
    }
}
