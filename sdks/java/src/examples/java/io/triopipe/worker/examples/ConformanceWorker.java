package io.triopipe.worker.examples;

import com.fasterxml.jackson.databind.JsonNode;
import io.triopipe.worker.Worker;
import java.net.URI;
import java.time.Duration;

/**
 * The worker that {@code trio-pipe conformance} runs (see docs/conformance.md): serves
 * {@code echo}, {@code sleep} and {@code fail}, over WebSocket when given a {@code ws://}
 * URL (last argument, or {@code TRIO_PIPE_URL}), over stdio otherwise. Reads {@code
 * TRIO_PIPE_WORKER_ID}, {@code TRIO_PIPE_MAX_CONCURRENCY} and {@code
 * TRIO_PIPE_HEARTBEAT_MS}; the builder reads {@code TRIO_PIPE_DRAIN_TIMEOUT_MS}, the
 * drain timeout of SIGTERM and SIGINT, which the SDK handles.
 */
public final class ConformanceWorker {
    record Sleep(long ms) {}

    record Slept(long sleptMs) {}

    record Fail(String message) {}

    private ConformanceWorker() {}

    public static void main(String[] args) throws Exception {
        Worker.Builder builder = Worker.builder()
                .handle("echo", JsonNode.class, (ctx, payload) -> payload)
                .handle("sleep", Sleep.class, (ctx, sleep) -> {
                    Thread.sleep(sleep.ms()); // Kill and timeouts interrupt it
                    return new Slept(sleep.ms());
                })
                .handle("fail", Fail.class, (ctx, fail) -> {
                    throw new IllegalStateException(fail.message());
                });
        String workerId = System.getenv("TRIO_PIPE_WORKER_ID");
        if (workerId != null) {
            builder.workerId(workerId);
        }
        String concurrency = System.getenv("TRIO_PIPE_MAX_CONCURRENCY");
        if (concurrency != null) {
            builder.maxConcurrency(Integer.parseInt(concurrency));
        }
        String heartbeatMs = System.getenv("TRIO_PIPE_HEARTBEAT_MS");
        if (heartbeatMs != null) {
            builder.heartbeatInterval(Duration.ofMillis(Long.parseLong(heartbeatMs)));
        }
        Worker worker = builder.build();

        String url = args.length > 0 ? args[args.length - 1] : System.getenv("TRIO_PIPE_URL");
        if (url != null && (url.startsWith("ws://") || url.startsWith("wss://"))) {
            worker.runWebSocket(URI.create(url));
        } else {
            worker.serveStdio();
        }
    }
}
