package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.IntNode;
import io.triopipe.worker.protocol.Backpressure;
import io.triopipe.worker.protocol.BackpressureSignal;
import io.triopipe.worker.protocol.Heartbeat;
import io.triopipe.worker.protocol.Message;
import io.triopipe.worker.protocol.TaskError;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskResultMessage;
import io.triopipe.worker.protocol.TaskStatus;
import io.triopipe.worker.protocol.WorkerRegister;
import io.triopipe.worker.protocol.WorkerRegistered;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * SIGTERM and SIGINT sent to the conformance worker as a real process, the way a
 * deployment tool stops it: it drains, and exits 0 or 130.
 */
class WorkerSignalsTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long WAIT_SECONDS = Peer.WAIT.toSeconds();

    private WorkerProcess worker;
    private TestWebSocketServer server;

    @AfterEach
    void stop() throws Exception {
        if (worker != null) {
            worker.close();
        }
        if (server != null) {
            server.close();
        }
    }

    /** The transports a worker is stopped on: the kit's {@code sigterm-drain} case runs both. */
    enum Mode {
        WEBSOCKET,
        STDIO
    }

    @ParameterizedTest
    @EnumSource(Mode.class)
    void sigtermLetsTheTasksInFlightFinishThenClosesAndExitsZero(Mode mode) throws Exception {
        Peer dispatcher = start(mode, Map.of());
        List<UUID> sleeping = List.of(dispatchSleep(dispatcher, 3000), dispatchSleep(dispatcher, 3000));
        dispatcher.await(Heartbeat.class, h -> h.payload().activeTasks() == 2);

        worker.signal("TERM");
        Backpressure draining = dispatcher.await(Backpressure.class, b -> b.signal().draining());
        assertEquals(new BackpressureSignal("process-worker", 1.0, true, true), draining.signal());
        assertRefused(dispatcher.result(dispatcher.dispatch("echo", IntNode.valueOf(1))));
        for (UUID id : sleeping) {
            assertEquals(TaskStatus.COMPLETED, dispatcher.result(id).status());
        }
        assertClosed(dispatcher);
        assertEquals(0, worker.exitStatus());

        List<Message> received = dispatcher.received();
        for (UUID id : sleeping) {
            assertTrue(received.indexOf(draining) < indexOfResult(received, id), "the tasks were in flight");
        }
        assertFalse(
                received.stream().anyMatch(m -> m instanceof Backpressure b && !b.signal().shouldThrottle()),
                "nothing lifts the draining signal");
        assertNoStackTrace();
    }

    @ParameterizedTest
    @EnumSource(Mode.class)
    void aTaskThatOutlivesTheDrainTimeoutIsCancelledRetryably(Mode mode) throws Exception {
        Peer dispatcher = start(mode, Map.of(Worker.DRAIN_TIMEOUT_ENV, "300"));
        UUID sleeping = dispatchSleep(dispatcher, 60_000);
        dispatcher.await(Heartbeat.class, h -> h.payload().activeTasks() == 1);

        worker.signal("TERM");
        dispatcher.await(Backpressure.class, b -> b.signal().draining());
        TaskResult result = dispatcher.result(sleeping);
        assertEquals(TaskStatus.CANCELLED, result.status());
        assertEquals(
                new TaskError(
                        ErrorCodes.WORKER_SHUTTING_DOWN,
                        "the worker is shutting down (SIGTERM) and its drain timeout passed",
                        true),
                result.error());
        assertClosed(dispatcher);
        assertEquals(0, worker.exitStatus());
        assertNoStackTrace();
    }

    @Test
    void aSecondSignalStopsAtOnce() throws Exception {
        Peer dispatcher = start(Mode.WEBSOCKET, Map.of()); // drain timeout: 30 s
        UUID sleeping = dispatchSleep(dispatcher, 60_000);
        dispatcher.await(Heartbeat.class, h -> h.payload().activeTasks() == 1);
        worker.signal("TERM");
        dispatcher.await(Backpressure.class, b -> b.signal().draining());

        long secondAt = System.nanoTime();
        worker.signal("TERM");
        TaskResult result = dispatcher.result(sleeping);
        assertEquals(TaskStatus.CANCELLED, result.status());
        assertEquals(
                new TaskError(
                        ErrorCodes.WORKER_SHUTTING_DOWN, "the worker is shutting down (second signal, SIGTERM)", true),
                result.error());
        assertClosed(dispatcher);
        assertEquals(0, worker.exitStatus());
        long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - secondAt);
        assertTrue(tookMs < 15_000, () -> "exited " + tookMs + " ms after the second signal: not before the drain timeout");
        assertNoStackTrace();
    }

    @Test
    void aSecondSignalCutsShortAClosingHandshakeTheDispatcherDoesNotAnswer() throws Exception {
        TestWebSocketServer.Connection dispatcher = (TestWebSocketServer.Connection) start(Mode.WEBSOCKET, Map.of());
        dispatcher.ignoreClose();
        worker.signal("TERM");
        assertEquals(1000, dispatcher.closeCode().get(WAIT_SECONDS, TimeUnit.SECONDS)); // drained: nothing ran

        long secondAt = System.nanoTime();
        worker.signal("TERM");
        assertEquals(0, worker.exitStatus());
        long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - secondAt);
        assertTrue(tookMs < 5_000, () -> "exited " + tookMs + " ms after the second signal: waited for the Close");
        assertNoStackTrace();
    }

    @Test
    void aThirdSignalHaltsAWorkerStuckWritingToStdout() throws Exception {
        worker = new WorkerProcess(null, Map.of(), false);
        String big = "x".repeat(1024 * 1024);
        worker.dispatch("echo", JSON.getNodeFactory().textNode(big));
        worker.stdout().readNBytes(128 * 1024); // the result is being written: then no more is read
        worker.signal("TERM");
        worker.awaitLog("SIGTERM: draining");
        worker.signal("TERM");
        worker.awaitLog("SIGTERM again: stopping at once");

        long thirdAt = System.nanoTime();
        worker.signal("TERM");
        assertEquals(0, worker.exitStatus());
        long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - thirdAt);
        assertTrue(tookMs < 5_000, () -> "exited " + tookMs + " ms after the third signal: waited for stdout");
        worker.awaitLog("SIGTERM again: halting at once");
    }

    @Test
    void sigintDrainsLikeSigtermAndExits130() throws Exception {
        Peer dispatcher = start(Mode.STDIO, Map.of());
        UUID sleeping = dispatchSleep(dispatcher, 2000);
        dispatcher.await(Heartbeat.class, h -> h.payload().activeTasks() == 1);

        worker.signal("INT");
        Backpressure draining = dispatcher.await(Backpressure.class, b -> b.signal().draining());
        assertEquals(new BackpressureSignal("process-worker", 0.5, true, true), draining.signal());
        assertEquals(TaskStatus.COMPLETED, dispatcher.result(sleeping).status());
        assertClosed(dispatcher);
        assertEquals(130, worker.exitStatus());
        assertNoStackTrace();
    }

    /** Starts the worker process; returns the dispatcher's side of its connection. */
    private Peer start(Mode mode, Map<String, String> env) throws Exception {
        if (mode == Mode.STDIO) {
            worker = new WorkerProcess(null, env);
            return worker;
        }
        server = new TestWebSocketServer(0);
        worker = new WorkerProcess(server.url().toString(), env);
        TestWebSocketServer.Connection connection = server.accept();
        connection.await(WorkerRegister.class, m -> true);
        connection.send(new WorkerRegistered("process-worker"));
        return connection;
    }

    /** The WebSocket closed with code 1000, or stdout ended. */
    private void assertClosed(Peer dispatcher) throws Exception {
        if (dispatcher instanceof TestWebSocketServer.Connection connection) {
            assertEquals(1000, connection.closeCode().get(WAIT_SECONDS, TimeUnit.SECONDS));
        } else {
            worker.stdoutEnded().get(WAIT_SECONDS, TimeUnit.SECONDS);
        }
    }

    private static UUID dispatchSleep(Peer peer, int ms) {
        return peer.dispatch("sleep", JSON.createObjectNode().put("ms", ms));
    }

    private static void assertRefused(TaskResult result) {
        assertEquals(TaskStatus.FAILED, result.status());
        assertEquals(ErrorCodes.WORKER_SHUTTING_DOWN, result.error().code());
        assertTrue(result.error().retryable());
    }

    private void assertNoStackTrace() {
        String log = worker.stderr();
        assertFalse(log.contains("Exception") || log.contains("\tat "), () -> "a stack trace in the log:\n" + log);
    }

    private static int indexOfResult(List<Message> received, UUID id) {
        for (int i = 0; i < received.size(); i++) {
            if (received.get(i) instanceof TaskResultMessage m
                    && m.result().taskId().equals(id)
                    && m.result().status().isTerminal()) {
                return i;
            }
        }
        return -1;
    }
}
