package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import io.triopipe.worker.protocol.Kill;
import io.triopipe.worker.protocol.TaskProgress;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskResultMessage;
import io.triopipe.worker.protocol.TaskStatus;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** {@link TaskContext#progress} and {@link TaskContext#extendDeadline}: long tasks. */
class ProgressTest {
    private static final JsonNode NO_PAYLOAD = JsonNodeFactory.instance.nullNode();
    private static final long WAIT_SECONDS = Peer.WAIT.toSeconds();

    /** The deadlines a handler saw before and after its extension. */
    private final CompletableFuture<Instant[]> deadlines = new CompletableFuture<>();

    private final CountDownLatch started = new CountDownLatch(1);
    private StdioPeer peer;

    private StdioPeer serve() throws Exception {
        Worker worker = Worker.builder()
                .workerId("progress-worker")
                .handleSignals(false)
                .handle("stages", JsonNode.class, (ctx, payload) -> {
                    ctx.progress(0.0, "start");
                    ctx.progress(0.5, null);
                    ctx.progress("almost there");
                    ctx.progress(1.0, "done");
                    return "ok";
                })
                .handle("extend", JsonNode.class, (ctx, payload) -> {
                    Instant before = ctx.deadline();
                    ctx.extendDeadline(Duration.ofMillis(payload.longValue()));
                    deadlines.complete(new Instant[] {before, ctx.deadline()});
                    new CountDownLatch(1).await(); // until the deadline interrupts it
                    return null;
                })
                .handle("extend-briefly", JsonNode.class, (ctx, payload) -> {
                    Instant before = ctx.deadline();
                    ctx.extendDeadline(Duration.ofNanos(1)); // rounded up to 1 ms
                    return before.equals(ctx.deadline());
                })
                .handle("report-when-killed", JsonNode.class, (ctx, payload) -> {
                    started.countDown();
                    try {
                        new CountDownLatch(1).await();
                    } catch (InterruptedException e) {
                        ctx.progress(0.9, "interrupted");
                        ctx.extendDeadline(Duration.ofMinutes(1));
                        throw e;
                    }
                    return null;
                })
                .handle("bad-progress", JsonNode.class, (ctx, payload) -> {
                    assertThrows(IllegalArgumentException.class, () -> ctx.progress(1.5, "too far"));
                    assertThrows(IllegalArgumentException.class, () -> ctx.extendDeadline(Duration.ZERO));
                    return "checked";
                })
                .build();
        peer = new StdioPeer(worker);
        return peer;
    }

    @AfterEach
    void stop() {
        if (peer != null) {
            peer.close();
        }
    }

    @Test
    void progressReportsArriveInOrderBeforeTheResult() throws Exception {
        StdioPeer peer = serve();
        UUID id = peer.dispatch("stages", NO_PAYLOAD);
        assertEquals(TaskStatus.COMPLETED, peer.result(id).status());

        List<TaskResult> reports = reportsOf(peer, id);
        List<TaskProgress> progress = new ArrayList<>();
        for (TaskResult report : reports.subList(0, reports.size() - 1)) {
            assertEquals(TaskStatus.RUNNING, report.status());
            assertEquals(NO_PAYLOAD, report.payload());
            assertNull(report.error());
            assertNull(report.extendMs());
            assertEquals("progress-worker", report.workerId());
            progress.add(report.progress());
        }
        assertEquals(
                List.of(
                        new TaskProgress(0.0, "start"),
                        new TaskProgress(0.5, null),
                        new TaskProgress(null, "almost there"),
                        new TaskProgress(1.0, "done")),
                progress);
        assertNull(reports.get(reports.size() - 1).progress(), "the result carries no progress");
    }

    @Test
    void anExtensionIsReportedAndMovesTheLocalDeadline() throws Exception {
        StdioPeer peer = serve();
        UUID id = peer.dispatch("extend", JsonNodeFactory.instance.numberNode(1500), 300);
        TaskResult report = peer.await(
                        TaskResultMessage.class,
                        m -> m.result().taskId().equals(id) && m.result().status() == TaskStatus.RUNNING)
                .result();
        assertEquals(1500L, report.extendMs());
        assertNull(report.progress());

        Instant[] seen = deadlines.get(WAIT_SECONDS, TimeUnit.SECONDS);
        assertTrue(seen[1].isAfter(seen[0].plusMillis(1000)), () -> seen[0] + " moved only to " + seen[1]);
        TaskResult result = peer.result(id);
        assertEquals(TaskStatus.TIMED_OUT, result.status());
        assertTrue(result.durationMs() >= 1490, () -> "timed out after " + result.durationMs() + " ms, not 1500");
        assertTrue(result.error().message().startsWith("task exceeded its timeout of 300 ms (extended to 1"),
                result.error()::message);
    }

    @Test
    void anExtensionNeverBringsTheDeadlineNearer() throws Exception {
        StdioPeer peer = serve();
        UUID id = peer.dispatch("extend-briefly", NO_PAYLOAD, 60_000);
        assertEquals(BooleanNode.TRUE, peer.result(id).payload(), "the deadline did not move");
        assertEquals(1L, reportsOf(peer, id).get(0).extendMs());
    }

    @Test
    void aStoppedTaskReportsNothingMore() throws Exception {
        StdioPeer peer = serve();
        UUID id = peer.dispatch("report-when-killed", NO_PAYLOAD);
        assertTrue(started.await(WAIT_SECONDS, TimeUnit.SECONDS));
        peer.send(new Kill(id, "enough"));
        assertEquals(TaskStatus.CANCELLED, peer.result(id).status());
        assertEquals(1, reportsOf(peer, id).size(), "the result only");
    }

    @Test
    void progressAndExtensionsOutOfRangeAreRefused() throws Exception {
        StdioPeer peer = serve();
        UUID id = peer.dispatch("bad-progress", NO_PAYLOAD);
        assertEquals(TaskStatus.COMPLETED, peer.result(id).status());
        assertEquals(1, reportsOf(peer, id).size(), "nothing was reported");
    }

    /** Every report of the task received so far, in order. */
    private static List<TaskResult> reportsOf(Peer peer, UUID id) {
        List<TaskResult> reports = new ArrayList<>();
        peer.received().forEach(m -> {
            if (m instanceof TaskResultMessage r && r.result().taskId().equals(id)) {
                reports.add(r.result());
            }
        });
        return reports;
    }
}
