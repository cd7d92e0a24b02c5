package io.triopipe.worker.protocol;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.node.DoubleNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import java.time.Instant;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/** What the vectors cannot show: the value types refuse what could not be encoded. */
class ModelTest {
    private static final UUID ID = UUID.fromString("3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f");

    @Test
    void aPayloadWithANaNCannotBeBuilt() {
        var payload = JsonNodeFactory.instance.arrayNode().add(1).add(DoubleNode.valueOf(Double.NaN));
        assertThrows(
                IllegalArgumentException.class, () -> new TaskResult(ID, TaskStatus.COMPLETED, payload, null, 0, "w"));
    }

    @Test
    void aJavaNullPayloadIsJsonNull() {
        TaskResult result = new TaskResult(ID, TaskStatus.COMPLETED, null, null, 0, "w");
        assertEquals(JsonNodeFactory.instance.nullNode(), result.payload());
    }

    @Test
    void workerIdsFollowTheProtocolSyntax() {
        assertEquals("node.7_a-b", WorkerRegistration.checkWorkerId("node.7_a-b"));
        for (String bad : List.of("", "-w", "a b", "a/b", "x".repeat(129))) {
            assertThrows(IllegalArgumentException.class, () -> WorkerRegistration.checkWorkerId(bad), bad);
        }
        assertThrows(
                IllegalArgumentException.class, () -> new WorkerRegistration("w", List.of("x"), 0, "Java", List.of()));
    }

    @Test
    void timestampsKeepMicrosecondsAndStayWithinYearsOneTo9999() {
        Instant nanos = Instant.parse("2025-03-14T09:26:53.123456789Z");
        TaskMetadata metadata = new TaskMetadata(nanos, 1, Priority.LOW, 0, 0, null);
        assertEquals(Instant.parse("2025-03-14T09:26:53.123456Z"), metadata.createdAt());
        assertThrows(
                IllegalArgumentException.class,
                () -> new TaskMetadata(Instant.parse("+10000-01-01T00:00:00Z"), 1, Priority.LOW, 0, 0, null));
    }

    @Test
    void enumsMatchInAnyAsciiCaseAndInSnakeCase() {
        assertEquals(TaskStatus.TIMED_OUT, TaskStatus.fromWire("timed_OUT"));
        assertEquals(TaskStatus.TIMED_OUT, TaskStatus.fromWire("TIMEDOUT"));
        assertEquals(Priority.CRITICAL, Priority.fromWire("CRITICAL"));
        assertThrows(IllegalArgumentException.class, () -> TaskStatus.fromWire("done"));
    }

    @Test
    void nearMissesOfAnEnumValueAreNoValue() {
        for (String nearMiss : new String[] {
            "timed-out", "timed out", "Time_dOut", "_TimedOut", "timed__out", "TimedOu", "T\u0130medOut"
        }) {
            assertThrows(IllegalArgumentException.class, () -> TaskStatus.fromWire(nearMiss), nearMiss);
        }
        // equalsIgnoreCase would take the dotless i (U+0131) for an I
        assertThrows(IllegalArgumentException.class, () -> Priority.fromWire("H\u0131gh"));
        assertThrows(IllegalArgumentException.class, () -> Priority.fromWire("Hi_gh"));
    }
}
