package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import io.triopipe.worker.protocol.Codec;
import io.triopipe.worker.protocol.Message;
import io.triopipe.worker.protocol.Priority;
import io.triopipe.worker.protocol.ProtocolException;
import io.triopipe.worker.protocol.Task;
import io.triopipe.worker.protocol.TaskDispatch;
import io.triopipe.worker.protocol.TaskMetadata;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskResultMessage;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * The dispatcher's side of a connection, scripted by a test: sends frames, records
 * every frame the worker writes, and checks that each is a message in its exact
 * canonical form.
 */
abstract class Peer implements AutoCloseable {
    static final Duration WAIT = Duration.ofSeconds(10);

    private final List<Message> received = new ArrayList<>(); // guarded by itself
    private final List<String> problems = new ArrayList<>(); // guarded by received

    /** Sends one raw frame (a line, or a text message) to the worker. */
    abstract void sendFrame(String frame);

    /** Ends the connection from the dispatcher's side. */
    @Override
    public abstract void close();

    void send(Message message) {
        sendFrame(Codec.encode(message));
    }

    /**
     * Called for each frame the worker writes. A frame that is not a message in its
     * canonical form makes every later wait fail.
     */
    protected final void deliver(String frame) {
        String problem = null;
        Message message = null;
        try {
            message = Codec.decode(frame);
            String canonical = Codec.encode(message);
            if (!canonical.equals(frame)) {
                problem = "the worker's output is not canonical: " + frame + "; expected " + canonical;
            }
        } catch (ProtocolException e) {
            problem = "the worker wrote a malformed frame: " + frame + " (" + e.getMessage() + ")";
        }
        synchronized (received) {
            if (problem == null) {
                received.add(message);
            } else {
                problems.add(problem);
            }
            received.notifyAll();
        }
    }

    /** Every message received so far, in order. */
    List<Message> received() {
        synchronized (received) {
            return List.copyOf(received);
        }
    }

    /** How many messages have been received: a mark for {@link #awaitAfter}. */
    int mark() {
        synchronized (received) {
            return received.size();
        }
    }

    /** The first message received of the type that matches, waiting up to {@link #WAIT}. */
    <T extends Message> T await(Class<T> type, Predicate<? super T> matches) throws InterruptedException {
        return awaitAfter(0, type, matches);
    }

    /** The first matching message received after {@code mark}, waiting up to {@link #WAIT}. */
    <T extends Message> T awaitAfter(int mark, Class<T> type, Predicate<? super T> matches)
            throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        synchronized (received) {
            for (int next = mark; ; ) {
                if (!problems.isEmpty()) {
                    return fail(String.join("\n", problems));
                }
                for (; next < received.size(); next++) {
                    Message message = received.get(next);
                    if (type.isInstance(message) && matches.test(type.cast(message))) {
                        return type.cast(message);
                    }
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return fail("no matching " + type.getSimpleName() + " within " + WAIT + "; received " + received);
                }
                TimeUnit.NANOSECONDS.timedWait(received, left);
            }
        }
    }

    /** The terminal result of a task (progress reports are skipped). */
    TaskResult result(UUID taskId) throws InterruptedException {
        return await(
                        TaskResultMessage.class,
                        m -> m.result().taskId().equals(taskId)
                                && m.result().status().isTerminal())
                .result();
    }

    /** Sends a task with the default timeout and returns its id. */
    UUID dispatch(String taskType, JsonNode payload) {
        return dispatch(taskType, payload, TaskMetadata.DEFAULT_TIMEOUT_MS);
    }

    UUID dispatch(String taskType, JsonNode payload, long timeoutMs) {
        UUID id = UUID.randomUUID();
        TaskMetadata metadata =
                new TaskMetadata(Instant.now(), timeoutMs, Priority.NORMAL, 0, TaskMetadata.DEFAULT_MAX_RETRIES, null);
        send(new TaskDispatch(new Task(id, taskType, payload, metadata)));
        return id;
    }
}
