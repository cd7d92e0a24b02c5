package io.triopipe.worker.protocol;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamWriteFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.time.Instant;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.function.Function;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * Reads and writes protocol messages: liberal on input, exact on output.
 *
 * <p>{@link #decode} accepts what docs/protocol.md says a receiver accepts (the
 * {@code "type"} tag and enums in any case, defaults for missing optional fields,
 * {@code task_id}/{@code worker_id} aliases, unknown members ignored) and rejects
 * everything else with a {@link ProtocolException}. {@link #encode} writes the canonical
 * text: compact JSON, {@code type} first, every field in the order of the protocol's
 * tables, non-ASCII characters as themselves. The optional extensions ({@code draining},
 * {@code progress}, {@code extendMs}, {@code maxConcurrencyByType}, and the task's
 * {@code idempotencyKey}, {@code attempt} and {@code epoch}) come last and are written
 * only when they hold something, so that every message of rust-pipe v0.1's shape
 * stays byte for byte what it was.
 */
public final class Codec {
    private static final JsonMapper JSON = JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(StreamWriteFeature.USE_FAST_DOUBLE_WRITER)
            .build();

    private static final Map<String, String> TAGS = Stream.of(
                    "TaskDispatch",
                    "Kill",
                    "Shutdown",
                    "WorkerRegistered",
                    "HeartbeatAck",
                    "WorkerRegister",
                    "Heartbeat",
                    "TaskResult",
                    "Backpressure")
            .collect(Collectors.toMap(tag -> tag.toLowerCase(Locale.ROOT), Function.identity()));

    private static final String ROOT = "$";

    private Codec() {}

    /**
     * Parses one frame (a WebSocket text message or a stdio line) into a message.
     *
     * @param frame the frame's text
     * @return the message it holds
     * @throws ProtocolException if the frame is not JSON, not an object, has no or an
     *     unknown {@code "type"}, or a field is missing, mistyped or out of range
     */
    public static Message decode(String frame) throws ProtocolException {
        JsonNode root = parse(frame);
        if (!root.isObject()) {
            throw new ProtocolException("expected a JSON object, got " + Fields.kind(root));
        }
        JsonNode tag = root.get("type");
        if (tag == null || tag.isNull()) {
            throw new ProtocolException("missing message type");
        }
        if (!tag.isTextual()) {
            throw new ProtocolException("message type must be a string");
        }
        String key = WireEnums.asciiLower(tag.textValue()); // null if not ASCII
        String type = key == null ? null : TAGS.get(key);
        if (type == null) {
            throw new ProtocolException("unknown message type " + Text.quote(tag.textValue()));
        }
        try {
            return message(type, Fields.of(root, ROOT));
        } catch (ProtocolException e) {
            throw new ProtocolException("invalid " + type + ": " + e.getMessage());
        }
    }

    /**
     * Writes a message as its canonical text.
     *
     * @param message the message
     * @return compact JSON, without a trailing newline
     */
    public static String encode(Message message) {
        StringWriter text = new StringWriter();
        try (JsonGenerator out = JSON.createGenerator(text)) {
            out.writeStartObject();
            out.writeStringField("type", message.type());
            writeFields(out, message);
            out.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a StringWriter does not fail
        }
        return text.toString();
    }

    private static JsonNode parse(String frame) throws ProtocolException {
        JsonNode root;
        try {
            root = JSON.readTree(frame);
        } catch (JsonProcessingException e) {
            throw new ProtocolException("not JSON: " + e.getOriginalMessage());
        }
        if (root == null || root.isMissingNode()) {
            throw new ProtocolException("not JSON: an empty frame");
        }
        try {
            return JsonValues.requireFinite(root);
        } catch (IllegalArgumentException e) {
            throw new ProtocolException("not JSON: " + e.getMessage());
        }
    }

    // -- decoding --------------------------------------------------------------

    private static Message message(String type, Fields f) throws ProtocolException {
        return switch (type) {
            case "TaskDispatch" -> new TaskDispatch(task(f.object("task")));
            case "Kill" -> new Kill(f.uuid(f.aliased("taskId", "task_id")), f.string("reason", ""));
            case "Shutdown" -> new Shutdown(f.bool("graceful", true));
            case "WorkerRegistered" -> new WorkerRegistered(f.string(f.aliased("workerId", "worker_id")));
            case "HeartbeatAck" -> new HeartbeatAck();
            case "WorkerRegister" -> new WorkerRegister(registration(f.object("registration")));
            case "Heartbeat" -> new Heartbeat(heartbeat(f.object("payload")));
            case "TaskResult" -> new TaskResultMessage(result(f.object("result")));
            case "Backpressure" -> new Backpressure(signal(f.object("signal")));
            default -> throw new IllegalStateException("no decoder for " + type);
        };
    }

    private static Task task(Fields f) throws ProtocolException {
        UUID id = f.uuid("id");
        String taskType = f.string("taskType");
        JsonNode payload = f.raw("payload");
        TaskMetadata metadata = f.raw("metadata") == null ? TaskMetadata.defaults() : metadata(f.object("metadata"));
        return f.build(() -> new Task(id, taskType, payload, metadata));
    }

    private static TaskMetadata metadata(Fields f) throws ProtocolException {
        Instant createdAt = f.timestamp("createdAt", Instant::now);
        long timeoutMs = f.integer("timeoutMs", TaskMetadata.DEFAULT_TIMEOUT_MS, 0);
        Priority priority = f.enumValue("priority", "priority", Priority::fromWire, Priority.NORMAL);
        long retryCount = f.integer("retryCount", 0, 0);
        long maxRetries = f.integer("maxRetries", TaskMetadata.DEFAULT_MAX_RETRIES, 0);
        String traceId = f.nullableString("traceId");
        String idempotencyKey = f.nullableString("idempotencyKey");
        Long attempt = f.nullableInteger("attempt", 1);
        Long epoch = f.nullableInteger("epoch", 0);
        return f.build(() -> new TaskMetadata(
                createdAt, timeoutMs, priority, retryCount, maxRetries, traceId, idempotencyKey, attempt, epoch));
    }

    private static WorkerRegistration registration(Fields f) throws ProtocolException {
        String workerId = f.string("workerId");
        List<String> supportedTasks = f.strings("supportedTasks", true);
        long maxConcurrency = f.integer("maxConcurrency", 1, 1);
        String language = language(f);
        List<String> tags = f.strings("tags", false);
        // Limits below 1 are refused by the record, naming the task type as the reference does.
        Map<String, Long> maxConcurrencyByType = f.integers("maxConcurrencyByType", Long.MIN_VALUE);
        return f.build(() ->
                new WorkerRegistration(workerId, supportedTasks, maxConcurrency, language, tags, maxConcurrencyByType));
    }

    /** A string, or rust-pipe's single-member object form ({@code {"Other": "wasm"}}). */
    private static String language(Fields f) throws ProtocolException {
        JsonNode value = f.raw("language");
        if (value != null && value.isObject() && value.size() == 1) {
            JsonNode member = value.elements().next();
            if (member.isTextual()) {
                return member.textValue();
            }
        }
        return f.string("language", "Unknown");
    }

    private static HeartbeatPayload heartbeat(Fields f) throws ProtocolException {
        String workerId = f.string("workerId");
        long activeTasks = f.integer("activeTasks", 0, 0);
        long capacity = f.integer("capacity", 0, 0);
        long uptimeSeconds = f.integer("uptimeSeconds", 0, 0);
        return f.build(() -> new HeartbeatPayload(workerId, activeTasks, capacity, uptimeSeconds));
    }

    private static TaskResult result(Fields f) throws ProtocolException {
        UUID taskId = f.uuid("taskId");
        TaskStatus status = f.enumValue("status", "task status", TaskStatus::fromWire);
        JsonNode payload = f.raw("payload");
        Fields errorFields = f.objectOrNull("error");
        TaskError error = errorFields == null ? null : error(errorFields);
        long durationMs = f.integer("durationMs", 0, 0);
        String workerId = f.string("workerId", "");
        if (status.isTerminal()) { // progress and extendMs belong to progress reports only
            return f.build(() -> new TaskResult(taskId, status, payload, error, durationMs, workerId));
        }
        Fields progressFields = f.objectOrNull("progress");
        TaskProgress progress = progressFields == null ? null : progress(progressFields);
        Long extendMs = f.nullableInteger("extendMs", 1);
        return f.build(() -> new TaskResult(taskId, status, payload, error, durationMs, workerId, progress, extendMs));
    }

    private static TaskProgress progress(Fields f) throws ProtocolException {
        Double fraction = f.nullableNumber("fraction");
        String message = f.nullableString("message");
        return f.build(() -> new TaskProgress(fraction, message));
    }

    private static TaskError error(Fields f) throws ProtocolException {
        String code = f.string("code");
        String message = f.string("message");
        boolean retryable = f.bool("retryable", false);
        return f.build(() -> new TaskError(code, message, retryable));
    }

    private static BackpressureSignal signal(Fields f) throws ProtocolException {
        String workerId = f.string("workerId");
        double currentLoad = f.number("currentLoad", 0.0);
        boolean shouldThrottle = f.bool("shouldThrottle", false);
        boolean draining = f.bool("draining", false);
        return f.build(() -> new BackpressureSignal(workerId, currentLoad, shouldThrottle, draining));
    }

    // -- encoding --------------------------------------------------------------

    private static void writeFields(JsonGenerator out, Message message) throws IOException {
        if (message instanceof TaskDispatch m) {
            out.writeFieldName("task");
            write(out, m.task());
        } else if (message instanceof Kill m) {
            out.writeStringField("taskId", m.taskId().toString());
            out.writeStringField("reason", m.reason());
        } else if (message instanceof Shutdown m) {
            out.writeBooleanField("graceful", m.graceful());
        } else if (message instanceof WorkerRegistered m) {
            out.writeStringField("workerId", m.workerId());
        } else if (message instanceof WorkerRegister m) {
            out.writeFieldName("registration");
            write(out, m.registration());
        } else if (message instanceof Heartbeat m) {
            out.writeFieldName("payload");
            write(out, m.payload());
        } else if (message instanceof TaskResultMessage m) {
            out.writeFieldName("result");
            write(out, m.result());
        } else if (message instanceof Backpressure m) {
            out.writeFieldName("signal");
            write(out, m.signal());
        }
        // HeartbeatAck has no fields.
    }

    private static void write(JsonGenerator out, Task task) throws IOException {
        out.writeStartObject();
        out.writeStringField("id", task.id().toString());
        out.writeStringField("taskType", task.taskType());
        out.writeFieldName("payload");
        out.writeTree(task.payload());
        TaskMetadata metadata = task.metadata();
        out.writeObjectFieldStart("metadata");
        out.writeStringField("createdAt", Timestamps.format(metadata.createdAt()));
        out.writeNumberField("timeoutMs", metadata.timeoutMs());
        out.writeStringField("priority", metadata.priority().wireName());
        out.writeNumberField("retryCount", metadata.retryCount());
        out.writeNumberField("maxRetries", metadata.maxRetries());
        out.writeStringField("traceId", metadata.traceId());
        if (metadata.idempotencyKey() != null) {
            out.writeStringField("idempotencyKey", metadata.idempotencyKey());
        }
        if (metadata.attempt() != null) {
            out.writeNumberField("attempt", metadata.attempt());
        }
        if (metadata.epoch() != null) {
            out.writeNumberField("epoch", metadata.epoch());
        }
        out.writeEndObject();
        out.writeEndObject();
    }

    /** The languages rust-pipe 0.1's dispatcher knows by name. */
    private static final Set<String> RUST_PIPE_LANGUAGES = Set.of("TypeScript", "Python", "Go");

    /**
     * Writes a worker's language as rust-pipe 0.1 does, so that its dispatcher can read
     * the registration: one of the names it knows as a string, any other as
     * {@code {"Other": name}} (it refuses {@code "Java"}).
     */
    private static void writeLanguage(JsonGenerator out, String language) throws IOException {
        if (RUST_PIPE_LANGUAGES.contains(language)) {
            out.writeStringField("language", language);
        } else {
            out.writeObjectFieldStart("language");
            out.writeStringField("Other", language);
            out.writeEndObject();
        }
    }

    private static void write(JsonGenerator out, WorkerRegistration registration) throws IOException {
        out.writeStartObject();
        out.writeStringField("workerId", registration.workerId());
        writeStrings(out, "supportedTasks", registration.supportedTasks());
        out.writeNumberField("maxConcurrency", registration.maxConcurrency());
        writeLanguage(out, registration.language());
        writeStrings(out, "tags", registration.tags());
        if (!registration.maxConcurrencyByType().isEmpty()) {
            out.writeObjectFieldStart("maxConcurrencyByType");
            for (Map.Entry<String, Long> limit : registration.maxConcurrencyByType().entrySet()) {
                out.writeNumberField(limit.getKey(), limit.getValue());
            }
            out.writeEndObject();
        }
        out.writeEndObject();
    }

    private static void write(JsonGenerator out, HeartbeatPayload payload) throws IOException {
        out.writeStartObject();
        out.writeStringField("workerId", payload.workerId());
        out.writeNumberField("activeTasks", payload.activeTasks());
        out.writeNumberField("capacity", payload.capacity());
        out.writeNumberField("uptimeSeconds", payload.uptimeSeconds());
        out.writeEndObject();
    }

    private static void write(JsonGenerator out, TaskResult result) throws IOException {
        out.writeStartObject();
        out.writeStringField("taskId", result.taskId().toString());
        out.writeStringField("status", result.status().wireName());
        out.writeFieldName("payload");
        out.writeTree(result.payload());
        out.writeFieldName("error");
        TaskError error = result.error();
        if (error == null) {
            out.writeNull();
        } else {
            out.writeStartObject();
            out.writeStringField("code", error.code());
            out.writeStringField("message", error.message());
            out.writeBooleanField("retryable", error.retryable());
            out.writeEndObject();
        }
        out.writeNumberField("durationMs", result.durationMs());
        out.writeStringField("workerId", result.workerId());
        TaskProgress progress = result.progress();
        if (progress != null) {
            out.writeObjectFieldStart("progress");
            out.writeFieldName("fraction");
            if (progress.fraction() == null) {
                out.writeNull();
            } else {
                out.writeNumber(progress.fraction());
            }
            out.writeStringField("message", progress.message());
            out.writeEndObject();
        }
        if (result.extendMs() != null) {
            out.writeNumberField("extendMs", result.extendMs());
        }
        out.writeEndObject();
    }

    private static void write(JsonGenerator out, BackpressureSignal signal) throws IOException {
        out.writeStartObject();
        out.writeStringField("workerId", signal.workerId());
        out.writeNumberField("currentLoad", signal.currentLoad());
        out.writeBooleanField("shouldThrottle", signal.shouldThrottle());
        if (signal.draining()) {
            out.writeBooleanField("draining", true);
        }
        out.writeEndObject();
    }

    private static void writeStrings(JsonGenerator out, String name, List<String> strings) throws IOException {
        out.writeArrayFieldStart(name);
        for (String item : strings) {
            out.writeString(item);
        }
        out.writeEndArray();
    }
}
