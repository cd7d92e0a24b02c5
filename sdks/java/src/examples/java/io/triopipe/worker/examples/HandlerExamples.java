package io.triopipe.worker.examples;

import com.fasterxml.jackson.databind.JsonNode;
import io.triopipe.worker.TaskFailure;
import io.triopipe.worker.Worker;
import io.triopipe.worker.protocol.TaskMetadata;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;

/**
 * Handlers as the SDK's docs show them: failures with a code, cancellation, deadlines,
 * the idempotency key and the fencing token.
 */
public final class HandlerExamples {
    private HandlerExamples() {}

    record Fetch(String url) {}

    record Page(int status, String body) {}

    record Primes(int count) {}

    record Charge(String account, long cents) {}

    record Receipt(String id) {}

    /**
     * A payment service: it charges once per idempotency key, and refuses a write whose
     * fencing token ({@code epoch}, {@code attempt}) is older than one it has seen.
     */
    interface Payments {
        Receipt charge(String account, long cents, String idempotencyKey, Long epoch, Long attempt)
                throws InterruptedException;
    }

    static final HttpClient HTTP = HttpClient.newHttpClient();

    static Worker worker(Payments payments) {
        return Worker.builder()
                .handle("fetch", Fetch.class, (ctx, in) -> {
                    if (!in.url().startsWith("https://")) {
                        throw new TaskFailure("BAD_INPUT", "url must be https", false); // not retried
                    }
                    Duration left = Duration.between(Instant.now(), ctx.deadline());
                    HttpRequest request = HttpRequest.newBuilder(URI.create(in.url()))
                            .timeout(left)
                            .build();
                    // Blocking I/O: Kill and the deadline interrupt it.
                    HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
                    return new Page(response.statusCode(), response.body());
                })
                .handle("primes", Primes.class, (ctx, in) -> {
                    BigInteger prime = BigInteger.ONE;
                    for (int i = 0; i < in.count(); i++) {
                        if (ctx.isCancelled()) { // pure computation: check now and then
                            return null; // reported Cancelled or TimedOut, not Completed
                        }
                        prime = prime.nextProbablePrime();
                    }
                    return prime;
                })
                .handle("charge", Charge.class, (ctx, in) -> {
                    TaskMetadata meta = ctx.task().metadata();
                    // The same key on every try; (epoch, attempt) tells this try from older ones.
                    return payments.charge(
                            in.account(), in.cents(), meta.idempotencyKey(), meta.epoch(), meta.attempt());
                })
                .handle(
                        "whoami",
                        JsonNode.class,
                        (ctx, payload) -> ctx.task().metadata().traceId())
                .build();
    }
}
