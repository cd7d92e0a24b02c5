package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.TextNode;
import io.triopipe.worker.protocol.Codec;
import io.triopipe.worker.protocol.Heartbeat;
import io.triopipe.worker.protocol.HeartbeatPayload;
import io.triopipe.worker.protocol.Priority;
import io.triopipe.worker.protocol.Shutdown;
import io.triopipe.worker.protocol.Task;
import io.triopipe.worker.protocol.TaskDispatch;
import io.triopipe.worker.protocol.TaskMetadata;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskStatus;
import io.triopipe.worker.protocol.WorkerRegister;
import io.triopipe.worker.protocol.WorkerRegistered;
import io.triopipe.worker.protocol.WorkerRegistration;
import java.net.URI;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** What is particular to WebSocket: registration, framing, reconnection, closing. */
class WorkerWebSocketTest {
    private static final long WAIT_SECONDS = Peer.WAIT.toSeconds();

    private final CountDownLatch started = new CountDownLatch(1);
    private final CountDownLatch interrupted = new CountDownLatch(1);
    private TestWebSocketServer server;
    private Thread running;

    private Worker.Builder worker() {
        return Worker.builder()
                .workerId("ws-worker.1")
                .maxConcurrency(3)
                .tags("gpu", "eu")
                .backoff(Duration.ofMillis(10), Duration.ofMillis(100))
                .handle("echo", JsonNode.class, (ctx, payload) -> payload)
                .handle("block", JsonNode.class, (ctx, payload) -> {
                    started.countDown();
                    try {
                        new CountDownLatch(1).await();
                    } catch (InterruptedException e) {
                        interrupted.countDown();
                        throw e;
                    }
                    return null;
                });
    }

    /** Runs the worker against the test server on a thread; the future says how it ended. */
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
        WorkerRegister register = connection.await(WorkerRegister.class, m -> true);
        connection.send(new WorkerRegistered(register.registration().workerId()));
        return connection;
    }

    @AfterEach
    void stop() throws Exception {
        if (running != null) {
            running.interrupt();
        }
        if (server != null) {
            server.close();
        }
    }

    @Test
    void registersThenHeartbeats() throws Exception {
        server = new TestWebSocketServer(0);
        run(worker().heartbeatInterval(Duration.ofMillis(50)).build(), server.url());
        TestWebSocketServer.Connection connection = server.accept();
        WorkerRegistration registration =
                connection.await(WorkerRegister.class, m -> true).registration();
        assertEquals(
                new WorkerRegistration("ws-worker.1", List.of("echo", "block"), 3, "Java", List.of("gpu", "eu")),
                registration);
        connection.send(new WorkerRegistered("ws-worker.1"));
        HeartbeatPayload heartbeat =
                connection.await(Heartbeat.class, m -> true).payload();
        assertEquals(new HeartbeatPayload("ws-worker.1", 0, 3, heartbeat.uptimeSeconds()), heartbeat);
        assertInstanceOf(WorkerRegister.class, connection.received().get(0), "nothing before the registration");
    }

    @Test
    void assemblesMessagesSentInSeveralFrames() throws Exception {
        server = new TestWebSocketServer(0);
        run(worker().build(), server.url());
        TestWebSocketServer.Connection connection = acceptAndRegister();
        TextNode big = TextNode.valueOf("é🐍".repeat(256 * 1024 / 6));
        UUID id = UUID.randomUUID();
        TaskMetadata metadata = new TaskMetadata(Instant.now(), 60_000, Priority.HIGH, 0, 3, "trace-1");
        connection.sendFragmented(Codec.encode(new TaskDispatch(new Task(id, "echo", big, metadata))), 5);
        TaskResult result = connection.result(id);
        assertEquals(TaskStatus.COMPLETED, result.status());
        assertEquals(big, result.payload());
    }

    @Test
    void reconnectsWithTheSameIdWhenTheConnectionIsLost() throws Exception {
        server = new TestWebSocketServer(0);
        int port = server.port();
        run(worker().build(), server.url());
        TestWebSocketServer.Connection first = acceptAndRegister();
        UUID running = first.dispatch("block", JsonNodeFactory.instance.nullNode());
        assertTrue(started.await(WAIT_SECONDS, TimeUnit.SECONDS));
        first.closeWith(1012);
        server.close();
        assertTrue(interrupted.await(WAIT_SECONDS, TimeUnit.SECONDS), "a lost connection stops its tasks");

        server = new TestWebSocketServer(port);
        TestWebSocketServer.Connection second = acceptAndRegister();
        assertEquals(
                "ws-worker.1",
                second.received().get(0) instanceof WorkerRegister r
                        ? r.registration().workerId()
                        : null);
        UUID id = second.dispatch("echo", TextNode.valueOf("again"));
        assertEquals(TextNode.valueOf("again"), second.result(id).payload());
        assertFalse(
                first.received().stream().anyMatch(m -> m.toString().contains(running.toString())),
                "no result for a task of the lost connection");
    }

    @Test
    void shutdownClosesTheConnectionAndReturns() throws Exception {
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> outcome = run(worker().build(), server.url());
        TestWebSocketServer.Connection connection = acceptAndRegister();
        UUID id = connection.dispatch("echo", TextNode.valueOf("last"));
        connection.send(new Shutdown(true));
        assertEquals(TaskStatus.COMPLETED, connection.result(id).status());
        assertEquals(1000, connection.closeCode().get(WAIT_SECONDS, TimeUnit.SECONDS));
        outcome.get(WAIT_SECONDS, TimeUnit.SECONDS);
    }

    @Test
    void withoutReconnectionALostConnectionThrows() throws Exception {
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> outcome = run(worker().reconnect(false).build(), server.url());
        acceptAndRegister().closeWith(1011);
        ExecutionException failure = assertThrowsCause(outcome);
        assertInstanceOf(WorkerConnectionException.class, failure.getCause());
        assertTrue(failure.getCause().getMessage().contains("code 1011"), failure.getCause()::getMessage);
    }

    @Test
    void aTaskBeforeWorkerRegisteredAcceptsTheRegistration() throws Exception {
        // A rust-pipe 0.1 dispatcher never sends WorkerRegistered: it dispatches at once.
        List<LogRecord> records = new CopyOnWriteArrayList<>();
        Handler recorder = new Handler() {
            @Override
            public void publish(LogRecord record) {
                records.add(record);
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        Logger log = Logger.getLogger("io.triopipe.worker");
        Level level = log.getLevel();
        log.setLevel(Level.ALL);
        log.addHandler(recorder);
        try {
            server = new TestWebSocketServer(0);
            run(worker().build(), server.url());
            TestWebSocketServer.Connection connection = server.accept();
            connection.await(WorkerRegister.class, m -> true);
            UUID id = connection.dispatch("echo", TextNode.valueOf("served"));
            TaskResult result = connection.result(id);
            assertEquals(TaskStatus.COMPLETED, result.status());
            assertEquals(TextNode.valueOf("served"), result.payload());
        } finally {
            log.removeHandler(recorder);
            log.setLevel(level);
        }
        assertTrue(
                records.stream().noneMatch(r -> r.getLevel().intValue() >= Level.WARNING.intValue()),
                () -> "warned: " + records.stream().map(LogRecord::getMessage).toList());
        assertTrue(records.stream()
                .anyMatch(r -> r.getLevel().equals(Level.FINE) && r.getMessage().contains("before WorkerRegistered")));
    }

    @Test
    void anUnansweredRegistrationIsTakenAsAcceptedAfterTheConnectTimeout() throws Exception {
        // An idle rust-pipe 0.1 dispatcher sends nothing at all: the worker keeps the
        // connection and heartbeats at once (the interval is far longer than the test).
        server = new TestWebSocketServer(0);
        Worker worker = worker().reconnect(false)
                .connectTimeout(Duration.ofMillis(200))
                .heartbeatInterval(Duration.ofHours(1))
                .build();
        CompletableFuture<Void> outcome = run(worker, server.url());
        TestWebSocketServer.Connection connection = server.accept();
        connection.await(WorkerRegister.class, m -> true);
        connection.await(Heartbeat.class, m -> true);
        UUID id = connection.dispatch("echo", TextNode.valueOf("still here"));
        assertEquals(TaskStatus.COMPLETED, connection.result(id).status());
        assertFalse(outcome.isDone(), "the worker keeps the connection");
        assertEquals(3, connection.received().size(), () -> "received " + connection.received());
    }

    @Test
    void interruptingTheCallerStopsTheTasks() throws Exception {
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> outcome = run(worker().build(), server.url());
        acceptAndRegister().dispatch("block", JsonNodeFactory.instance.nullNode());
        assertTrue(started.await(WAIT_SECONDS, TimeUnit.SECONDS));
        running.interrupt();
        assertInstanceOf(InterruptedException.class, assertThrowsCause(outcome).getCause());
        assertTrue(interrupted.await(WAIT_SECONDS, TimeUnit.SECONDS));
    }

    private static ExecutionException assertThrowsCause(CompletableFuture<Void> outcome) {
        return org.junit.jupiter.api.Assertions.assertThrows(
                ExecutionException.class, () -> outcome.get(WAIT_SECONDS, TimeUnit.SECONDS));
    }
}
