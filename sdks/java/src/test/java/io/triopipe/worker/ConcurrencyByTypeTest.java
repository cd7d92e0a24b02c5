package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskStatus;
import io.triopipe.worker.protocol.WorkerRegister;
import io.triopipe.worker.protocol.WorkerRegistered;
import io.triopipe.worker.protocol.WorkerRegistration;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** {@link Worker.Builder#maxConcurrencyByType}: registered, enforced, validated. */
class ConcurrencyByTypeTest {
    private static final JsonNode NO_PAYLOAD = JsonNodeFactory.instance.nullNode();
    private static final long WAIT_SECONDS = Peer.WAIT.toSeconds();

    private final Semaphore started = new Semaphore(0);
    private final CountDownLatch release = new CountDownLatch(1);
    /** Handlers running now, and the most ever, by task type ("all" for the total). */
    private final Map<String, AtomicInteger> now = new LinkedHashMap<>();

    private final Map<String, AtomicInteger> peak = new LinkedHashMap<>();
    private StdioPeer peer;
    private TestWebSocketServer server;

    private Worker.Builder worker() {
        for (String counter : List.of("render", "fetch", "all")) {
            now.put(counter, new AtomicInteger());
            peak.put(counter, new AtomicInteger());
        }
        Map<String, Integer> limits = new LinkedHashMap<>();
        limits.put("render", 2);
        limits.put("fetch", 3);
        return Worker.builder()
                .workerId("typed-worker")
                .maxConcurrency(4)
                .maxConcurrencyByType(limits)
                .handleSignals(false)
                .handle("render", JsonNode.class, (ctx, payload) -> counted("render"))
                .handle("fetch", JsonNode.class, (ctx, payload) -> counted("fetch"))
                .handle("echo", JsonNode.class, (ctx, payload) -> payload);
    }

    private String counted(String type) throws InterruptedException {
        enter(type);
        enter("all");
        started.release();
        try {
            release.await();
            return type;
        } finally {
            now.get(type).decrementAndGet();
            now.get("all").decrementAndGet();
        }
    }

    private void enter(String counter) {
        int running = now.get(counter).incrementAndGet();
        peak.get(counter).accumulateAndGet(running, Math::max);
    }

    @AfterEach
    void stop() throws Exception {
        release.countDown();
        if (peer != null) {
            peer.close();
        }
        if (server != null) {
            server.close();
        }
    }

    @Test
    void perTypeLimitsHoldBesideTheTotalOne() throws Exception {
        peer = new StdioPeer(worker().build());
        List<UUID> running = new ArrayList<>();
        running.add(peer.dispatch("render", NO_PAYLOAD));
        running.add(peer.dispatch("render", NO_PAYLOAD));
        awaitStarted(2);
        assertSaturated(peer.result(peer.dispatch("render", NO_PAYLOAD)), "2 'render' tasks");

        running.add(peer.dispatch("fetch", NO_PAYLOAD));
        running.add(peer.dispatch("fetch", NO_PAYLOAD));
        awaitStarted(2);
        assertSaturated(peer.result(peer.dispatch("fetch", NO_PAYLOAD)), "4 tasks"); // the total, below fetch's 3

        release.countDown();
        for (UUID id : running) {
            assertEquals(TaskStatus.COMPLETED, peer.result(id).status());
        }
        assertEquals(2, peak.get("render").get());
        assertEquals(2, peak.get("fetch").get());
        assertEquals(4, peak.get("all").get());
        assertEquals(TaskStatus.COMPLETED, peer.result(peer.dispatch("render", NO_PAYLOAD)).status(), "slots freed");
    }

    @Test
    void theRegistrationCarriesTheLimitsInTheirOrder() throws Exception {
        server = new TestWebSocketServer(0);
        Worker worker = worker().build();
        CompletableFuture<Void> outcome = CompletableFuture.runAsync(() -> {
            try {
                worker.runWebSocket(server.url());
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        TestWebSocketServer.Connection dispatcher = server.accept();
        WorkerRegistration registration =
                dispatcher.await(WorkerRegister.class, m -> true).registration();
        Map<String, Long> limits = new LinkedHashMap<>();
        limits.put("render", 2L);
        limits.put("fetch", 3L);
        assertEquals(
                new WorkerRegistration("typed-worker", List.of("render", "fetch", "echo"), 4, "Java", List.of(), limits),
                registration);
        assertEquals(List.copyOf(limits.keySet()), List.copyOf(registration.maxConcurrencyByType().keySet()));
        dispatcher.send(new WorkerRegistered("typed-worker"));
        worker.drain(Duration.ZERO);
        outcome.get(WAIT_SECONDS, TimeUnit.SECONDS);
    }

    @Test
    void theLimitsAreCheckedWhenTheWorkerIsBuilt() {
        IllegalArgumentException belowOne = assertThrows(
                IllegalArgumentException.class, () -> Worker.builder().maxConcurrencyByType(Map.of("render", 0)));
        assertEquals("maxConcurrencyByType: the limit of 'render' must be >= 1, got 0", belowOne.getMessage());

        IllegalStateException unknown = assertThrows(
                IllegalStateException.class,
                () -> worker().maxConcurrencyByType(Map.of("resize", 1)).build());
        assertEquals("maxConcurrencyByType: no handler for task type 'resize'", unknown.getMessage());

        IllegalStateException aboveTotal = assertThrows(
                IllegalStateException.class,
                () -> worker().maxConcurrencyByType(Map.of("render", 5)).build());
        assertEquals(
                "maxConcurrencyByType: the limit of 'render', 5, is above maxConcurrency 4", aboveTotal.getMessage());
    }

    private void awaitStarted(int handlers) throws InterruptedException {
        assertTrue(started.tryAcquire(handlers, WAIT_SECONDS, TimeUnit.SECONDS), "the handlers did not start");
    }

    private static void assertSaturated(TaskResult result, String messagePart) {
        assertEquals(TaskStatus.FAILED, result.status());
        assertEquals(ErrorCodes.WORKER_SATURATED, result.error().code());
        assertTrue(result.error().retryable());
        assertTrue(result.error().message().contains(messagePart), result.error()::message);
    }
}
