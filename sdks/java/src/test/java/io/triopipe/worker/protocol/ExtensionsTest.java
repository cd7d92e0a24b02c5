package io.triopipe.worker.protocol;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.node.NullNode;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * The optional extensions of the protocol: draining, progress, deadline extension,
 * per-type limits, and the task's idempotency key and fencing token. Each is written
 * only when it holds something, so that every message of rust-pipe v0.1's shape is
 * unchanged.
 */
class ExtensionsTest {
    private static final UUID ID = UUID.fromString("3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f");
    private static final String RESULT_PREFIX = "{\"type\":\"TaskResult\",\"result\":{\"taskId\":\"" + ID + "\",";

    private static String roundTrip(String frame) throws ProtocolException {
        return Codec.encode(Codec.decode(frame));
    }

    @Test
    void drainingIsWrittenOnlyWhenTrue() throws ProtocolException {
        String draining = "{\"type\":\"Backpressure\",\"signal\":{\"workerId\":\"w1\",\"currentLoad\":0.5,"
                + "\"shouldThrottle\":true,\"draining\":true}}";
        assertEquals(draining, Codec.encode(new Backpressure(new BackpressureSignal("w1", 0.5, true, true))));
        assertEquals(draining, roundTrip(draining));
        String plain = "{\"type\":\"Backpressure\",\"signal\":{\"workerId\":\"w1\",\"currentLoad\":0.5,"
                + "\"shouldThrottle\":true}}";
        assertEquals(plain, Codec.encode(new Backpressure(new BackpressureSignal("w1", 0.5, true, false))));
        assertEquals(plain, roundTrip(plain.replace("true}", "true,\"draining\":false}")));
    }

    @Test
    void aProgressReportCarriesProgressAndExtendMsOnlyWhenPresent() throws ProtocolException {
        String head = RESULT_PREFIX
                + "\"status\":\"Running\",\"payload\":null,\"error\":null,\"durationMs\":1200,\"workerId\":\"w1\"";
        String both = head + ",\"progress\":{\"fraction\":0.4,\"message\":\"stage 2\"},\"extendMs\":5000}}";
        TaskResult result = new TaskResult(
                ID, TaskStatus.RUNNING, null, null, 1200, "w1", new TaskProgress(0.4, "stage 2"), 5000L);
        assertEquals(both, Codec.encode(new TaskResultMessage(result)));
        assertEquals(both, roundTrip(both));

        String progressOnly = head + ",\"progress\":{\"fraction\":null,\"message\":\"stage 2\"}}}";
        assertEquals(progressOnly, roundTrip(progressOnly));
        assertEquals(progressOnly, roundTrip(progressOnly.replace("}}}", "},\"extendMs\":null}}")));
        String extendOnly = head + ",\"extendMs\":1}}";
        assertEquals(extendOnly, roundTrip(extendOnly));
        String neither = head + "}}";
        assertEquals(neither, roundTrip(neither));
        assertEquals(neither, roundTrip(head + ",\"progress\":null,\"extendMs\":null}}"));
    }

    @Test
    void aTerminalResultNeverCarriesProgress() throws ProtocolException {
        String completed = RESULT_PREFIX
                + "\"status\":\"Completed\",\"payload\":1,\"error\":null,\"durationMs\":3,\"workerId\":\"w1\"";
        TaskResultMessage decoded = (TaskResultMessage) Codec.decode(
                completed + ",\"progress\":{\"fraction\":1.0,\"message\":null},\"extendMs\":10}}");
        assertNull(decoded.result().progress());
        assertNull(decoded.result().extendMs());
        assertEquals(completed + "}}", Codec.encode(decoded));
        assertThrows(
                IllegalArgumentException.class,
                () -> new TaskResult(
                        ID, TaskStatus.COMPLETED, NullNode.getInstance(), null, 0, "w1", new TaskProgress(1.0, null), null));
    }

    @Test
    void progressAndExtendMsOutOfRangeAreRejectedWithTheirPath() {
        String head = RESULT_PREFIX + "\"status\":\"Running\"";
        assertRejected(head + ",\"extendMs\":0}}", "$.result.extendMs");
        assertRejected(head + ",\"extendMs\":1.5}}", "$.result.extendMs");
        assertRejected(head + ",\"progress\":{\"fraction\":1.5}}}", "$.result.progress");
        assertRejected(head + ",\"progress\":{\"fraction\":\"half\"}}}", "$.result.progress.fraction");
        assertRejected(head + ",\"progress\":{\"message\":7}}}", "$.result.progress.message");
        assertRejected(head + ",\"progress\":[0.5]}}", "$.result.progress");
        assertThrows(IllegalArgumentException.class, () -> new TaskProgress(-0.1, null));
        assertThrows(IllegalArgumentException.class, () -> new TaskProgress(Double.NaN, null));
    }

    @Test
    void perTypeLimitsAreWrittenOnlyWhenThereAreSome() throws ProtocolException {
        String plain = "{\"type\":\"WorkerRegister\",\"registration\":{\"workerId\":\"w1\","
                + "\"supportedTasks\":[\"render\",\"fetch\"],\"maxConcurrency\":52,\"language\":\"Go\",\"tags\":[]";
        String limited = plain + ",\"maxConcurrencyByType\":{\"render\":2,\"fetch\":50}}}";
        Map<String, Long> limits = new LinkedHashMap<>();
        limits.put("render", 2L);
        limits.put("fetch", 50L);
        WorkerRegistration registration =
                new WorkerRegistration("w1", List.of("render", "fetch"), 52, "Go", List.of(), limits);
        assertEquals(limited, Codec.encode(new WorkerRegister(registration)));
        assertEquals(limited, roundTrip(limited), "the order of the limits is kept");
        assertEquals(plain + "}}", roundTrip(plain + ",\"maxConcurrencyByType\":{}}}"));
        assertEquals(plain + "}}", roundTrip(plain + ",\"maxConcurrencyByType\":null}}"));
    }

    @Test
    void perTypeLimitsMustBeFromOneToMaxConcurrency() {
        String head = "{\"type\":\"WorkerRegister\",\"registration\":{\"workerId\":\"w1\","
                + "\"supportedTasks\":[\"render\"],\"maxConcurrency\":4";
        assertRejected(head + ",\"maxConcurrencyByType\":{\"render\":0}}}", "$.registration");
        assertRejected(head + ",\"maxConcurrencyByType\":{\"render\":\"2\"}}}", "$.registration.maxConcurrencyByType.render");
        assertRejected(head + ",\"maxConcurrencyByType\":[2]}}", "$.registration.maxConcurrencyByType");
        assertRejected(head + ",\"maxConcurrencyByType\":{\"render\":5}}}", "$.registration");
    }

    @Test
    void theTaskExtensionsAreWrittenOnlyWhenSet() throws ProtocolException {
        String head = "{\"type\":\"TaskDispatch\",\"task\":{\"id\":\"" + ID + "\",\"taskType\":\"charge\","
                + "\"payload\":null,\"metadata\":{\"createdAt\":\"2025-03-14T09:26:53Z\",\"timeoutMs\":300000,"
                + "\"priority\":\"Normal\",\"retryCount\":0,\"maxRetries\":3,\"traceId\":null";
        Instant created = Instant.parse("2025-03-14T09:26:53Z");
        TaskMetadata all = new TaskMetadata(created, 300_000, Priority.NORMAL, 0, 3, null, "order-42", 1L, 0L);
        String allText = head + ",\"idempotencyKey\":\"order-42\",\"attempt\":1,\"epoch\":0}}}";
        assertEquals(allText, Codec.encode(new TaskDispatch(new Task(ID, "charge", null, all))));
        assertEquals(all, ((TaskDispatch) Codec.decode(allText)).task().metadata());

        String keyOnly = head + ",\"idempotencyKey\":\"\"}}}";
        assertEquals(keyOnly, roundTrip(keyOnly), "an empty key is a key");
        String tokenOnly = head + ",\"attempt\":2,\"epoch\":5}}}";
        assertEquals(tokenOnly, roundTrip(tokenOnly));
        assertEquals(tokenOnly, roundTrip(tokenOnly.replace(",\"attempt", ",\"idempotencyKey\":null,\"attempt")));

        String none = head + "}}}";
        TaskMetadata plain = ((TaskDispatch) Codec.decode(none)).task().metadata();
        assertNull(plain.idempotencyKey());
        assertNull(plain.attempt());
        assertNull(plain.epoch());
        assertEquals(none, roundTrip(none));
        assertEquals(none, roundTrip(head + ",\"idempotencyKey\":null,\"attempt\":null,\"epoch\":null}}}"));
    }

    @Test
    void attemptAndEpochOutOfRangeAreRejectedLikeTheOtherCounts() {
        assertMetadataRejected("\"attempt\":0", "attempt must be >= 1, got 0 @ $.task.metadata.attempt");
        assertMetadataRejected("\"epoch\":-1", "epoch must be >= 0, got -1 @ $.task.metadata.epoch");
        assertMetadataRejected("\"retryCount\":-1", "retryCount must be >= 0, got -1 @ $.task.metadata.retryCount");
        assertMetadataRejected("\"attempt\":1.0", "expected an integer, got a number @ $.task.metadata.attempt");
        assertMetadataRejected("\"epoch\":\"7\"", "expected an integer, got a string @ $.task.metadata.epoch");
        assertMetadataRejected(
                "\"epoch\":9223372036854775808",
                "epoch is out of range, got 9223372036854775808 @ $.task.metadata.epoch");
        assertMetadataRejected(
                "\"idempotencyKey\":42", "expected a string, got an integer @ $.task.metadata.idempotencyKey");
        Instant now = Instant.now();
        assertThrows(
                IllegalArgumentException.class,
                () -> new TaskMetadata(now, 1, Priority.NORMAL, 0, 0, null, null, 0L, null));
        assertThrows(
                IllegalArgumentException.class,
                () -> new TaskMetadata(now, 1, Priority.NORMAL, 0, 0, null, null, null, -1L));
    }

    /** A dispatch whose metadata holds {@code members} is rejected for exactly {@code reason}. */
    private static void assertMetadataRejected(String members, String reason) {
        String frame = "{\"type\":\"TaskDispatch\",\"task\":{\"id\":\"" + ID + "\",\"taskType\":\"charge\","
                + "\"metadata\":{" + members + "}}}";
        ProtocolException rejected = assertThrows(ProtocolException.class, () -> Codec.decode(frame), frame);
        assertEquals("invalid TaskDispatch: " + reason, rejected.getMessage());
    }

    private static void assertRejected(String frame, String path) {
        ProtocolException rejected = assertThrows(ProtocolException.class, () -> Codec.decode(frame), frame);
        assertTrue(rejected.getMessage().endsWith(" @ " + path), rejected::getMessage);
    }
}
