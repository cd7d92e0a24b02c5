package io.triopipe.worker.examples;

import com.fasterxml.jackson.databind.JsonNode;
import io.triopipe.worker.PemTls;
import io.triopipe.worker.Worker;
import io.triopipe.worker.WorkerConnectionException;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;

/**
 * The worker that {@code trio-pipe conformance} runs (see docs/conformance.md): serves
 * {@code echo}, {@code sleep} and {@code fail}, over WebSocket when given a {@code ws://}
 * URL (last argument, or {@code TRIO_PIPE_URL}), over stdio otherwise. Reads {@code
 * TRIO_PIPE_WORKER_ID}, {@code TRIO_PIPE_MAX_CONCURRENCY} and {@code
 * TRIO_PIPE_HEARTBEAT_MS}, and for a {@code wss://} URL {@code TRIO_PIPE_CAFILE}, {@code
 * TRIO_PIPE_CERTFILE} and {@code TRIO_PIPE_KEYFILE}; the builder reads {@code
 * TRIO_PIPE_DRAIN_TIMEOUT_MS}, the drain timeout of SIGTERM and SIGINT, which the SDK
 * handles, and {@code TRIO_PIPE_TOKEN}. A refused handshake or registration ends it
 * with one line on stderr and status 1.
 */
public final class ConformanceWorker {
    record Sleep(long ms) {}

    record Slept(long sleptMs) {}

    record Fail(String message) {}

    private ConformanceWorker() {}

    private static Path path(String variable) {
        String value = System.getenv(variable);
        return value == null || value.isEmpty() ? null : Path.of(value);
    }

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
        String url = args.length > 0 ? args[args.length - 1] : System.getenv("TRIO_PIPE_URL");
        if (url != null && url.startsWith("wss://")) { // the builder reads TRIO_PIPE_TOKEN itself
            builder.sslContext(PemTls.sslContext(
                    path("TRIO_PIPE_CAFILE"), path("TRIO_PIPE_CERTFILE"), path("TRIO_PIPE_KEYFILE")));
        }
        Worker worker = builder.build();

        if (url != null && (url.startsWith("ws://") || url.startsWith("wss://"))) {
            try {
                worker.runWebSocket(URI.create(url));
            } catch (WorkerConnectionException e) { // refused: "... (HTTP 401): ...", or gave up
                System.err.println("conformance-worker: " + e.getMessage());
                System.exit(1);
            }
        } else {
            worker.serveStdio();
        }
    }
}
