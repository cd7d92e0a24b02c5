package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import io.triopipe.worker.protocol.Backpressure;
import io.triopipe.worker.protocol.BackpressureSignal;
import io.triopipe.worker.protocol.Heartbeat;
import io.triopipe.worker.protocol.HeartbeatPayload;
import io.triopipe.worker.protocol.Kill;
import io.triopipe.worker.protocol.Message;
import io.triopipe.worker.protocol.Shutdown;
import io.triopipe.worker.protocol.TaskError;
import io.triopipe.worker.protocol.TaskMetadata;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskResultMessage;
import io.triopipe.worker.protocol.TaskStatus;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The worker's behaviour, whatever the transport, exercised over stdio pipes. */
class WorkerStdioTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final JsonNode NO_PAYLOAD = JsonNodeFactory.instance.nullNode();

    record Sum(List<Integer> numbers) {}

    record Total(int total) {}

    /** What a handler passes on to the systems it writes to. */
    record Fence(String idempotencyKey, Long epoch, Long attempt) {}

    private static final long WAIT_SECONDS = Peer.WAIT.toSeconds();

    /** "block" handlers release {@link #started} and wait for {@link #release}. */
    private final Semaphore started = new Semaphore(0);

    private final CountDownLatch release = new CountDownLatch(1);
    private final CountDownLatch interrupted = new CountDownLatch(1);
    private StdioPeer peer;

    private Worker.Builder worker() {
        return Worker.builder()
                .workerId("test-worker")
                .maxConcurrency(2)
                .handle("echo", JsonNode.class, (ctx, payload) -> payload)
                .handle(
                        "sum",
                        Sum.class,
                        (ctx, sum) -> new Total(sum.numbers().stream()
                                .mapToInt(Integer::intValue)
                                .sum()))
                .handle("block", JsonNode.class, (ctx, payload) -> {
                    started.release();
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        interrupted.countDown();
                        throw e;
                    }
                    return "released";
                })
                .handle("fail", JsonNode.class, (ctx, payload) -> {
                    throw new IllegalArgumentException("bad input: " + payload.textValue());
                })
                .handle("refuse", JsonNode.class, (ctx, payload) -> {
                    throw new TaskFailure("QUOTA_EXCEEDED", "no quota left", false);
                })
                .handle("nan", JsonNode.class, (ctx, payload) -> Double.NaN)
                .handle("fence", JsonNode.class, (ctx, payload) -> {
                    TaskMetadata metadata = ctx.task().metadata();
                    return new Fence(metadata.idempotencyKey(), metadata.epoch(), metadata.attempt());
                });
    }

    private StdioPeer serve(Worker.Builder builder) throws Exception {
        peer = new StdioPeer(builder.build());
        return peer;
    }

    @AfterEach
    void stop() {
        release.countDown();
        if (peer != null) {
            peer.close();
        }
    }

    @Test
    void echoesAnyPayload() throws Exception {
        StdioPeer peer = serve(worker());
        JsonNode payload = JSON.readTree("{\"text\":\"héllo 🐍\",\"list\":[1,2.5,null,true],\"nested\":{\"a\":{}}}");
        UUID id = peer.dispatch("echo", payload);
        TaskResult result = peer.result(id);
        assertEquals(TaskStatus.COMPLETED, result.status());
        assertEquals(payload, result.payload());
        assertNull(result.error());
        assertEquals("test-worker", result.workerId());
    }

    @Test
    void bindsPayloadsAndResultsWithJackson() throws Exception {
        StdioPeer peer = serve(worker());
        UUID id = peer.dispatch("sum", JSON.readTree("{\"numbers\":[1,2,3],\"unknown\":true}"));
        assertEquals(JSON.readTree("{\"total\":6}"), peer.result(id).payload());
    }

    @Test
    void aHandlerReadsTheIdempotencyKeyAndTheFencingToken() throws Exception {
        StdioPeer peer = serve(worker());
        UUID id = UUID.randomUUID();
        peer.sendFrame("{\"type\":\"TaskDispatch\",\"task\":{\"id\":\"" + id + "\",\"taskType\":\"fence\","
                + "\"metadata\":{\"retryCount\":1,\"idempotencyKey\":\"order-42\",\"attempt\":3,\"epoch\":7}}}");
        assertEquals(
                JSON.readTree("{\"idempotencyKey\":\"order-42\",\"epoch\":7,\"attempt\":3}"),
                peer.result(id).payload());

        UUID plain = peer.dispatch("fence", NO_PAYLOAD); // a dispatcher of rust-pipe v0.1's shape
        assertEquals(
                JSON.readTree("{\"idempotencyKey\":null,\"epoch\":null,\"attempt\":null}"),
                peer.result(plain).payload());
    }

    @Test
    void payloadThatDoesNotBindIsAParseError() throws Exception {
        StdioPeer peer = serve(worker());
        UUID id = peer.dispatch("sum", JSON.readTree("{\"numbers\":\"many\"}"));
        assertFailed(peer.result(id), ErrorCodes.PARSE_ERROR, false, "payload does not match Sum");
    }

    @Test
    void resultThatIsNotJsonIsAParseError() throws Exception {
        StdioPeer peer = serve(worker());
        assertFailed(peer.result(peer.dispatch("nan", NO_PAYLOAD)), ErrorCodes.PARSE_ERROR, false, "not JSON");
    }

    @Test
    void handlerExceptionFailsTheTaskRetryably() throws Exception {
        StdioPeer peer = serve(worker());
        UUID id = peer.dispatch("fail", JSON.readTree("\"oops\""));
        assertFailed(peer.result(id), ErrorCodes.HANDLER_ERROR, true, "IllegalArgumentException: bad input: oops");
    }

    @Test
    void taskFailureChoosesTheCode() throws Exception {
        StdioPeer peer = serve(worker());
        assertFailed(peer.result(peer.dispatch("refuse", NO_PAYLOAD)), "QUOTA_EXCEEDED", false, "no quota left");
    }

    @Test
    void unknownTaskTypeIsRefused() throws Exception {
        StdioPeer peer = serve(worker());
        UUID id = peer.dispatch("no-such-type", NO_PAYLOAD);
        assertFailed(peer.result(id), ErrorCodes.UNKNOWN_TASK_TYPE, false, "'no-such-type'");
    }

    @Test
    void dispatchBeyondCapacityIsRefusedAndBackpressureFollowsTheSlots() throws Exception {
        StdioPeer peer = serve(worker());
        UUID first = peer.dispatch("block", NO_PAYLOAD);
        UUID second = peer.dispatch("block", NO_PAYLOAD);
        Backpressure full = peer.await(Backpressure.class, b -> true);
        assertEquals(new BackpressureSignal("test-worker", 1.0, true), full.signal());

        UUID third = peer.dispatch("block", NO_PAYLOAD);
        assertFailed(peer.result(third), ErrorCodes.WORKER_SATURATED, true, "2 tasks");

        release.countDown();
        assertEquals(TaskStatus.COMPLETED, peer.result(first).status());
        assertEquals(TaskStatus.COMPLETED, peer.result(second).status());
        Backpressure freed = peer.await(Backpressure.class, b -> !b.signal().shouldThrottle());
        assertEquals(new BackpressureSignal("test-worker", 0.5, false), freed.signal());
        List<Message> received = peer.received();
        int firstResult = Math.min(indexOfResult(received, first), indexOfResult(received, second));
        assertTrue(received.indexOf(freed) > firstResult, "the release follows the result that freed the slot");
    }

    @Test
    void killInterruptsTheHandler() throws Exception {
        StdioPeer peer = serve(worker());
        UUID id = peer.dispatch("block", NO_PAYLOAD);
        awaitStarted(1);
        peer.send(new Kill(id, "the caller gave up"));
        TaskResult result = peer.result(id);
        assertEquals(TaskStatus.CANCELLED, result.status());
        assertEquals(new TaskError(ErrorCodes.KILLED, "the caller gave up", false), result.error());
        assertTrue(interrupted.await(WAIT_SECONDS, TimeUnit.SECONDS));
    }

    @Test
    void killIsVisibleToAHandlerThatDoesNotBlock() throws Exception {
        StdioPeer peer = serve(worker().handle("spin", JsonNode.class, (ctx, payload) -> {
            started.release();
            while (!ctx.isCancelled()) {
                Thread.onSpinWait();
            }
            return "stopped on my own";
        }));
        UUID id = peer.dispatch("spin", NO_PAYLOAD);
        awaitStarted(1);
        peer.send(new Kill(id, ""));
        TaskResult result = peer.result(id);
        assertEquals(TaskStatus.CANCELLED, result.status());
        assertEquals(new TaskError(ErrorCodes.KILLED, "killed by the dispatcher", false), result.error());
        assertEquals(NO_PAYLOAD, result.payload());
    }

    @Test
    void timeoutInterruptsTheHandler() throws Exception {
        StdioPeer peer = serve(worker());
        UUID id = peer.dispatch("block", NO_PAYLOAD, 200);
        TaskResult result = peer.result(id);
        assertEquals(TaskStatus.TIMED_OUT, result.status());
        assertEquals(new TaskError(ErrorCodes.TIMEOUT, "task exceeded its timeout of 200 ms", true), result.error());
        assertTrue(result.durationMs() >= 190, () -> "durationMs " + result.durationMs());
        assertTrue(interrupted.await(WAIT_SECONDS, TimeUnit.SECONDS));
    }

    @Test
    void heartbeatsReportTheActiveTasks() throws Exception {
        StdioPeer peer = serve(worker().heartbeatInterval(Duration.ofMillis(50)));
        UUID id = peer.dispatch("block", NO_PAYLOAD);
        HeartbeatPayload busy =
                peer.await(Heartbeat.class, h -> h.payload().activeTasks() == 1).payload();
        assertEquals(new HeartbeatPayload("test-worker", 1, 2, busy.uptimeSeconds()), busy);
        release.countDown();
        peer.result(id);
        peer.awaitAfter(peer.mark(), Heartbeat.class, h -> h.payload().activeTasks() == 0);
    }

    @Test
    void gracefulShutdownFinishesTheTasksInFlight() throws Exception {
        StdioPeer peer = serve(worker());
        UUID running = peer.dispatch("block", NO_PAYLOAD);
        awaitStarted(1);
        peer.send(new Shutdown(true));
        UUID late = peer.dispatch("echo", NO_PAYLOAD);
        assertFailed(peer.result(late), ErrorCodes.WORKER_SHUTTING_DOWN, true, "shutting down");
        assertFalse(peer.hasReturned());
        release.countDown();
        assertEquals(TaskStatus.COMPLETED, peer.result(running).status());
        peer.awaitReturn();
    }

    @Test
    void gracefulShutdownDrainsEvenAfterEndOfInput() throws Exception {
        StdioPeer peer = serve(worker());
        UUID running = peer.dispatch("block", NO_PAYLOAD);
        awaitStarted(1);
        peer.send(new Shutdown(true));
        peer.closeInput();
        release.countDown();
        assertEquals(TaskStatus.COMPLETED, peer.result(running).status());
        peer.awaitReturn();
    }

    @Test
    void immediateShutdownCancelsTheTasksInFlight() throws Exception {
        StdioPeer peer = serve(worker());
        UUID running = peer.dispatch("block", NO_PAYLOAD);
        awaitStarted(1);
        peer.send(new Shutdown(false));
        TaskResult result = peer.result(running);
        assertEquals(TaskStatus.CANCELLED, result.status());
        assertEquals(ErrorCodes.WORKER_SHUTTING_DOWN, result.error().code());
        assertTrue(interrupted.await(WAIT_SECONDS, TimeUnit.SECONDS));
        peer.awaitReturn();
    }

    @Test
    void endOfInputStopsTheTasksAndReturns() throws Exception {
        StdioPeer peer = serve(worker());
        UUID running = peer.dispatch("block", NO_PAYLOAD);
        awaitStarted(1);
        peer.closeInput();
        assertTrue(interrupted.await(WAIT_SECONDS, TimeUnit.SECONDS));
        peer.awaitReturn();
        assertEquals(-1, indexOfResult(peer.received(), running), "a lost task's result is dropped");
    }

    @Test
    void malformedInputIsSkipped() throws Exception {
        StdioPeer peer = serve(worker());
        for (String frame : List.of(
                "not JSON",
                "[{\"type\":\"Shutdown\"}]",
                "{\"taskId\":\"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f\"}",
                "{\"type\":\"Hello\"}",
                "{\"type\":\"TaskDispatch\",\"task\":{\"taskType\":\"echo\"}}",
                "{\"type\":\"Kill\",\"taskId\":\"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f\"}",
                "{\"type\":\"HeartbeatAck\"}",
                "",
                "   ")) {
            peer.sendFrame(frame);
        }
        UUID id = peer.dispatch("echo", JSON.readTree("\"still here\""));
        assertEquals(TaskStatus.COMPLETED, peer.result(id).status());
        assertEquals(1, peer.received().size(), () -> "nothing but the result: " + peer.received());
        assertFalse(peer.hasReturned());
    }

    private void awaitStarted(int handlers) throws InterruptedException {
        assertTrue(started.tryAcquire(handlers, WAIT_SECONDS, TimeUnit.SECONDS), "the handlers did not start");
    }

    private static int indexOfResult(List<Message> received, UUID id) {
        for (int i = 0; i < received.size(); i++) {
            if (received.get(i) instanceof TaskResultMessage m
                    && m.result().taskId().equals(id)) {
                return i;
            }
        }
        return -1;
    }

    private static void assertFailed(TaskResult result, String code, boolean retryable, String messagePart) {
        assertEquals(TaskStatus.FAILED, result.status());
        TaskError error = result.error();
        assertEquals(code, error.code());
        assertEquals(retryable, error.retryable());
        assertTrue(error.message().contains(messagePart), error::message);
        assertEquals(NO_PAYLOAD, result.payload());
    }
}
