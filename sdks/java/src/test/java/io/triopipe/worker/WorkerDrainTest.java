package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import io.triopipe.worker.protocol.Backpressure;
import io.triopipe.worker.protocol.BackpressureSignal;
import io.triopipe.worker.protocol.TaskError;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskStatus;
import io.triopipe.worker.protocol.WorkerRegister;
import io.triopipe.worker.protocol.WorkerRegistered;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.net.URI;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** {@link Worker#drain}: the drain that SIGTERM starts, as a library call. */
class WorkerDrainTest {
    private static final JsonNode NO_PAYLOAD = JsonNodeFactory.instance.nullNode();
    private static final long WAIT_SECONDS = Peer.WAIT.toSeconds();

    /** "block" and "stubborn" handlers release {@link #started} and wait for {@link #release}. */
    private final Semaphore started = new Semaphore(0);

    private final CountDownLatch release = new CountDownLatch(1);
    private final CountDownLatch stubbornReturned = new CountDownLatch(1);
    private Peer peer;
    private TestWebSocketServer server;
    private Thread running;

    private Worker worker() {
        return Worker.builder()
                .workerId("drain-worker")
                .maxConcurrency(2)
                .handleSignals(false)
                .heartbeatInterval(Duration.ofHours(1)) // no write reveals a closed connection
                .backoff(Duration.ofSeconds(30), Duration.ofSeconds(30))
                .handle("echo", JsonNode.class, (ctx, payload) -> payload)
                .handle("block", JsonNode.class, (ctx, payload) -> {
                    started.release();
                    release.await();
                    return "released";
                })
                .handle("stubborn", JsonNode.class, (ctx, payload) -> {
                    started.release();
                    awaitUninterruptibly(release);
                    stubbornReturned.countDown();
                    return "too late";
                })
                .build();
    }

    @AfterEach
    void stop() throws Exception {
        release.countDown();
        if (peer != null) {
            peer.close();
        }
        if (running != null) {
            running.interrupt();
        }
        if (server != null) {
            server.close();
        }
    }

    @Test
    void drainSignalsRefusesNewTasksAndFinishesTheTasksInFlight() throws Exception {
        Worker worker = worker();
        StdioPeer peer = serve(worker);
        UUID running = peer.dispatch("block", NO_PAYLOAD);
        awaitStarted();

        assertTrue(worker.drain(Duration.ofMinutes(1)));
        Backpressure draining = peer.await(Backpressure.class, b -> b.signal().draining());
        assertEquals(new BackpressureSignal("drain-worker", 0.5, true, true), draining.signal());
        TaskResult refused = peer.result(peer.dispatch("echo", NO_PAYLOAD));
        assertEquals(TaskStatus.FAILED, refused.status());
        assertEquals(new TaskError(ErrorCodes.WORKER_SHUTTING_DOWN, "the worker is shutting down", true), refused.error());
        assertFalse(peer.hasReturned());

        release.countDown();
        assertEquals(TaskStatus.COMPLETED, peer.result(running).status());
        peer.awaitReturn();
        assertEquals(
                1, peer.received().stream().filter(m -> m instanceof Backpressure).count(), "one signal, never lifted");
    }

    @Test
    void tasksLeftAtTheEndOfTheGraceAreReportedWithoutWaitingForTheirHandlers() throws Exception {
        Worker worker = worker();
        StdioPeer peer = serve(worker);
        UUID stubborn = peer.dispatch("stubborn", NO_PAYLOAD);
        awaitStarted();

        worker.drain(Duration.ofMillis(200));
        TaskResult result = peer.result(stubborn);
        assertEquals(TaskStatus.CANCELLED, result.status());
        assertEquals(
                new TaskError(
                        ErrorCodes.WORKER_SHUTTING_DOWN,
                        "the worker is shutting down (drain requested) and its drain timeout passed",
                        true),
                result.error());
        assertTrue(result.durationMs() >= 190, () -> "durationMs " + result.durationMs());
        peer.awaitReturn();
        assertEquals(1, stubbornReturned.getCount(), "the handler still runs: it ignores interrupts");

        release.countDown();
        assertTrue(stubbornReturned.await(WAIT_SECONDS, TimeUnit.SECONDS));
        assertEquals(1, peer.received().stream().filter(m -> m.toString().contains(stubborn.toString())).count());
    }

    @Test
    void aNearerDeadlineStopsADrainAtOnce() throws Exception {
        Worker worker = worker();
        StdioPeer peer = serve(worker);
        UUID running = peer.dispatch("block", NO_PAYLOAD);
        awaitStarted();
        worker.drain(Duration.ofHours(1));
        peer.await(Backpressure.class, b -> b.signal().draining());

        worker.drain(Duration.ZERO);
        TaskResult result = peer.result(running);
        assertEquals(TaskStatus.CANCELLED, result.status());
        assertEquals(
                new TaskError(ErrorCodes.WORKER_SHUTTING_DOWN, "the worker is shutting down (drain requested)", true),
                result.error());
        peer.awaitReturn();
    }

    @Test
    void aWorkerThatIsNotRunningHasNothingToDrain() {
        assertFalse(worker().drain());
    }

    @Test
    void theDrainTimeoutComesFromTheEnvironmentUnlessSet() {
        assertEquals(Duration.ofSeconds(30), Worker.Builder.drainTimeoutFromEnv(null));
        assertEquals(Duration.ofMillis(250), Worker.Builder.drainTimeoutFromEnv("250"));
        assertEquals(Duration.ZERO, Worker.Builder.drainTimeoutFromEnv(" 0 "));
        for (String bad : new String[] {"", "abc", "-1", "1.5", "30s"}) {
            IllegalStateException refused =
                    assertThrows(IllegalStateException.class, () -> Worker.Builder.drainTimeoutFromEnv(bad));
            assertEquals(
                    "TRIO_PIPE_DRAIN_TIMEOUT_MS must be a whole number of milliseconds >= 0, got '" + bad + "'",
                    refused.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> Worker.builder().drainTimeout(Duration.ofMillis(-1)));
        assertThrows(IllegalArgumentException.class, () -> worker().drain(Duration.ofMillis(-1)));
    }

    @Test
    void aWorkerServesOneRunAtATime() throws Exception {
        Worker worker = worker();
        StdioPeer peer = serve(worker);
        assertEquals(TaskStatus.COMPLETED, peer.result(peer.dispatch("echo", NO_PAYLOAD)).status());
        IllegalStateException refused = assertThrows(
                IllegalStateException.class,
                () -> worker.serveStdio(new ByteArrayInputStream(new byte[0]), new ByteArrayOutputStream()));
        assertTrue(refused.getMessage().contains("running already"), refused::getMessage);
        assertFalse(peer.hasReturned());
    }

    @Test
    void overWebSocketADrainClosesWith1000AndReturns() throws Exception {
        Worker worker = worker();
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> outcome = run(worker, server.url());
        TestWebSocketServer.Connection dispatcher = acceptAndRegister();
        UUID running = dispatcher.dispatch("block", NO_PAYLOAD);
        awaitStarted();

        worker.drain();
        dispatcher.await(Backpressure.class, b -> b.signal().draining());
        release.countDown();
        assertEquals(TaskStatus.COMPLETED, dispatcher.result(running).status());
        assertEquals(1000, dispatcher.closeCode().get(WAIT_SECONDS, TimeUnit.SECONDS));
        outcome.get(WAIT_SECONDS, TimeUnit.SECONDS);
    }

    @Test
    void aConnectionLostDuringADrainIsNotReconnected() throws Exception {
        Worker worker = worker();
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> outcome = run(worker, server.url());
        TestWebSocketServer.Connection dispatcher = acceptAndRegister();
        dispatcher.dispatch("block", NO_PAYLOAD);
        awaitStarted();
        worker.drain(Duration.ofHours(1));
        dispatcher.await(Backpressure.class, b -> b.signal().draining());

        dispatcher.closeWith(1012);
        outcome.get(WAIT_SECONDS, TimeUnit.SECONDS); // returned: it does not reconnect
    }

    @Test
    void aDrainWakesTheWorkerWaitingToReconnect() throws Exception {
        Worker worker = Worker.builder()
                .handleSignals(false)
                .backoff(Duration.ofHours(1), Duration.ofHours(1)) // a delay of up to an hour
                .handle("echo", JsonNode.class, (ctx, payload) -> payload)
                .build();
        server = new TestWebSocketServer(0);
        URI url = server.url();
        server.close();
        CountDownLatch waiting = new CountDownLatch(1);
        Handler onReconnecting = new Handler() {
            @Override
            public void publish(LogRecord record) {
                if (record.getMessage().contains("reconnecting in")) {
                    waiting.countDown();
                }
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        Logger log = Logger.getLogger("io.triopipe.worker");
        log.addHandler(onReconnecting);
        try {
            CompletableFuture<Void> outcome = run(worker, url);
            assertTrue(waiting.await(WAIT_SECONDS, TimeUnit.SECONDS), "the first connection did not fail");
            assertTrue(worker.drain());
            outcome.get(WAIT_SECONDS, TimeUnit.SECONDS);
        } finally {
            log.removeHandler(onReconnecting);
        }
    }

    @Test
    void aDrainBeforeRegistrationClosesWith1000() throws Exception {
        Worker worker = worker();
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> outcome = run(worker, server.url());
        TestWebSocketServer.Connection dispatcher = server.accept();
        dispatcher.await(WorkerRegister.class, m -> true);

        worker.drain();
        assertEquals(1000, dispatcher.closeCode().get(WAIT_SECONDS, TimeUnit.SECONDS));
        outcome.get(WAIT_SECONDS, TimeUnit.SECONDS);
        assertEquals(1, dispatcher.received().size(), "nothing but the registration");
    }

    private StdioPeer serve(Worker worker) throws Exception {
        StdioPeer stdio = new StdioPeer(worker);
        peer = stdio;
        return stdio;
    }

    private CompletableFuture<Void> run(Worker worker, URI url) {
        CompletableFuture<Void> outcome = new CompletableFuture<>();
        running = new Thread(
                () -> {
                    try {
                        worker.runWebSocket(url);
                        outcome.complete(null);
                    } catch (Throwable e) {
                        outcome.completeExceptionally(e);
                    }
                },
                "websocket-worker");
        running.setDaemon(true);
        running.start();
        return outcome;
    }

    private TestWebSocketServer.Connection acceptAndRegister() throws Exception {
        TestWebSocketServer.Connection connection = server.accept();
        connection.await(WorkerRegister.class, m -> true);
        connection.send(new WorkerRegistered("drain-worker"));
        return connection;
    }

    private void awaitStarted() throws InterruptedException {
        assertTrue(started.tryAcquire(WAIT_SECONDS, TimeUnit.SECONDS), "the handler did not start");
    }

    private static void awaitUninterruptibly(CountDownLatch latch) {
        boolean interrupted = false;
        while (true) {
            try {
                latch.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
