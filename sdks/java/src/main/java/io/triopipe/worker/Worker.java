package io.triopipe.worker;

import static java.lang.System.Logger.Level.INFO;
import static java.lang.System.Logger.Level.WARNING;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import io.triopipe.worker.protocol.WorkerRegistration;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * A trio_pipe worker: typed handlers by task type, served to a dispatcher over
 * WebSocket ({@link #runWebSocket}) or stdin/stdout ({@link #serveStdio()}).
 *
 * <pre>{@code
 * Worker worker = Worker.builder()
 *         .workerId("resizer-1")
 *         .maxConcurrency(4)
 *         .handle("resize", Resize.class, (ctx, in) -> new Resized(in.url(), in.width()))
 *         .build();
 * worker.runWebSocket(URI.create("ws://127.0.0.1:9876"));
 * }</pre>
 *
 * <p>Each dispatched task runs on a thread of a pool of {@code maxConcurrency}
 * threads; a dispatch beyond that is answered {@code Failed} with {@link
 * ErrorCodes#WORKER_SATURATED}. The worker sends {@code Backpressure} (throttle) when
 * its last slot is taken and again (release) when one frees up. {@code Kill}, the
 * task's {@code timeoutMs} (counted from receipt) and a non-graceful {@code Shutdown}
 * interrupt the handler's thread, and the task is reported {@code Cancelled} ({@link
 * ErrorCodes#KILLED}), {@code TimedOut} ({@link ErrorCodes#TIMEOUT}) or {@code
 * Cancelled} ({@link ErrorCodes#WORKER_SHUTTING_DOWN}) once the handler has returned.
 *
 * <p>A worker is immutable and may serve several times, one run at a time.
 */
public final class Worker {
    private static final System.Logger LOG = System.getLogger("io.triopipe.worker");
    private static final Duration DEFAULT_HEARTBEAT = Duration.ofSeconds(5);

    private final Config config;

    private Worker(Config config) {
        this.config = config;
    }

    /**
     * Starts configuring a worker.
     *
     * @return a builder with every default
     */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * The id this worker registers with.
     *
     * @return the worker id
     */
    public String workerId() {
        return config.workerId();
    }

    /**
     * Serves the dispatcher at {@code url} until it sends {@code Shutdown}.
     *
     * <p>Connects, sends {@code WorkerRegister} (this worker's id, its task types, its
     * {@code maxConcurrency}, language {@code "Java"}, its tags), waits for {@code
     * WorkerRegistered}, then runs the tasks it is sent and sends a heartbeat every
     * heartbeat interval (default 5 s).
     *
     * <p>Returns after {@code Shutdown}: graceful, once the tasks in flight have
     * finished and their results are sent; not graceful, once they have been stopped
     * and reported {@code Cancelled}. The connection is then closed with code 1000.
     *
     * <p>If the connection cannot be made or registered within the connect timeout, or
     * is lost without {@code Shutdown}, the tasks in flight are stopped (their results
     * cannot be delivered; the dispatcher retries them), and the worker connects again
     * with the same id after a random delay whose cap starts at the initial backoff and
     * doubles per failed attempt up to the maximum backoff; a registration resets it.
     * Without reconnection ({@link Builder#reconnect}) it throws instead.
     *
     * @param url the dispatcher's {@code ws://} or {@code wss://} URL
     * @throws WorkerConnectionException if the connection failed or was lost and the
     *     worker may not reconnect
     * @throws InterruptedException if the calling thread is interrupted: every handler
     *     is interrupted and the connection aborted
     * @throws IllegalArgumentException if the URL is not a WebSocket URL
     */
    public void runWebSocket(URI url) throws WorkerConnectionException, InterruptedException {
        String scheme = url.getScheme();
        if (!"ws".equalsIgnoreCase(scheme) && !"wss".equalsIgnoreCase(scheme)) {
            throw new IllegalArgumentException("expected a ws:// or wss:// URL, got " + url);
        }
        HttpClient client =
                HttpClient.newBuilder().connectTimeout(config.connectTimeout()).build();
        Backoff backoff = new Backoff(config.backoffInitial(), config.backoffMax());
        long startedAt = System.nanoTime();
        Duration heartbeat = Objects.requireNonNullElse(config.heartbeatInterval(), DEFAULT_HEARTBEAT);
        try (WorkerThreads threads = new WorkerThreads(config.maxConcurrency())) {
            while (true) {
                Session session = null;
                SessionEnd end;
                try {
                    WebSocketTransport transport = WebSocketTransport.connect(client, url, config.connectTimeout());
                    session = new Session(config, transport, threads, startedAt, heartbeat);
                    transport.start(session);
                    session.register(config.connectTimeout());
                    end = serve(session, transport);
                } catch (IOException e) {
                    end = new SessionEnd(false, "could not connect to " + url + ": " + e.getMessage());
                }
                if (end.shutdown()) {
                    LOG.log(INFO, "worker {0} shut down: {1}", workerId(), end.reason());
                    return;
                }
                if (!config.reconnect()) {
                    throw new WorkerConnectionException("worker " + workerId() + ": " + end.reason());
                }
                if (session != null && session.wasRegistered()) {
                    backoff.reset();
                }
                Duration delay = backoff.next();
                LOG.log(WARNING, "{0}; reconnecting in {1} ms", end.reason(), delay.toMillis());
                TimeUnit.NANOSECONDS.sleep(delay.toNanos());
            }
        }
    }

    /**
     * Serves the dispatcher that spawned this process, over stdin and stdout.
     *
     * <p>While it serves, {@code System.out} is redirected to {@code System.err}, so
     * that nothing but protocol lines reaches stdout; log to stderr too (the default of
     * {@code java.util.logging}). See {@link #serveStdio(InputStream, OutputStream)}.
     *
     * @throws InterruptedException if the calling thread is interrupted
     */
    public void serveStdio() throws InterruptedException {
        PrintStream stdout = System.out;
        stdout.flush();
        System.setOut(System.err);
        try {
            serveStdio(System.in, new FileOutputStream(FileDescriptor.out));
        } finally {
            System.setOut(stdout);
        }
    }

    /**
     * Serves a dispatcher over a pair of streams carrying newline-delimited JSON: one
     * message per line, read from {@code in}, written to {@code out}.
     *
     * <p>A spawned worker is registered by the dispatcher, so nothing is sent before
     * the first result; heartbeats are sent only if a heartbeat interval was set. Blank
     * lines are skipped, malformed ones logged and skipped.
     *
     * <p>Returns after {@code Shutdown} (graceful: once the tasks in flight have
     * finished and their results are written, even if {@code in} ends meanwhile; not
     * graceful: once they have been stopped and reported {@code Cancelled}), or when
     * {@code in} ends or {@code out} fails without {@code Shutdown}: the tasks in flight
     * are then stopped and their results dropped. Neither stream is closed; the thread
     * reading {@code in} ends at its end.
     *
     * @param in where the dispatcher's messages come from
     * @param out where this worker's messages go
     * @throws InterruptedException if the calling thread is interrupted: every handler
     *     is interrupted
     */
    public void serveStdio(InputStream in, OutputStream out) throws InterruptedException {
        try (WorkerThreads threads = new WorkerThreads(config.maxConcurrency())) {
            StdioTransport transport = new StdioTransport(in, out, config.connectTimeout());
            Session session = new Session(config, transport, threads, System.nanoTime(), config.heartbeatInterval());
            session.serveUnregistered();
            transport.start(session);
            SessionEnd end = serve(session, transport);
            LOG.log(INFO, "worker {0} stopped: {1}", workerId(), end.reason());
        }
    }

    /**
     * Waits for the session to end, then closes the transport: normally after {@code
     * Shutdown} (what is queued is sent first), at once otherwise. An interrupt stops
     * the session and aborts the transport.
     */
    private static SessionEnd serve(Session session, Transport transport) throws InterruptedException {
        SessionEnd end;
        try {
            end = session.ended().get();
        } catch (InterruptedException e) {
            session.lose("interrupted");
            transport.abort();
            throw e;
        } catch (ExecutionException e) {
            throw new IllegalStateException(e); // it never fails
        }
        if (end.shutdown()) {
            transport.close();
        } else {
            transport.abort();
        }
        return end;
    }

    /** Configures a {@link Worker}. Every setting has a default except the handlers. */
    public static final class Builder {
        private String workerId;
        private int maxConcurrency = 10;
        private Duration heartbeatInterval;
        private List<String> tags = List.of();
        private boolean reconnect = true;
        private Duration backoffInitial = Duration.ofMillis(100);
        private Duration backoffMax = Duration.ofSeconds(10);
        private Duration connectTimeout = Duration.ofSeconds(10);
        private ObjectMapper json;
        private final Map<String, TypedHandler<?>> handlers = new LinkedHashMap<>();

        private Builder() {}

        /**
         * The id to register with, kept across reconnections (default: {@code
         * java-<host>-<8 hex digits>}, fresh per worker).
         *
         * @param workerId 1 to 128 characters of {@code A-Z a-z 0-9 . _ -}, starting
         *     with a letter or a digit
         * @return this builder
         */
        public Builder workerId(String workerId) {
            this.workerId = WorkerRegistration.checkWorkerId(workerId);
            return this;
        }

        /**
         * How many tasks run at once (default 10): the size of the handler pool, and
         * the {@code maxConcurrency} registered.
         *
         * @param maxConcurrency at least 1
         * @return this builder
         */
        public Builder maxConcurrency(int maxConcurrency) {
            if (maxConcurrency < 1) {
                throw new IllegalArgumentException("maxConcurrency must be >= 1, got " + maxConcurrency);
            }
            this.maxConcurrency = maxConcurrency;
            return this;
        }

        /**
         * The time between heartbeats (default: 5 s over WebSocket, none over stdio).
         *
         * @param interval a positive duration
         * @return this builder
         */
        public Builder heartbeatInterval(Duration interval) {
            this.heartbeatInterval = positive("heartbeatInterval", interval);
            return this;
        }

        /**
         * Labels that tasks can be routed by (default: none).
         *
         * @param tags the tags to register
         * @return this builder
         */
        public Builder tags(String... tags) {
            this.tags = List.of(tags);
            return this;
        }

        /**
         * Whether to reconnect after a failed connection or a lost one (default true).
         * Without, {@link #runWebSocket} throws {@link WorkerConnectionException}.
         *
         * @param reconnect false to give up at the first failure
         * @return this builder
         */
        public Builder reconnect(boolean reconnect) {
            this.reconnect = reconnect;
            return this;
        }

        /**
         * The reconnection delay's cap: {@code initial} for the first attempt, doubling
         * per failed attempt up to {@code max} (default 100 ms and 10 s). Each delay is
         * drawn uniformly from zero to the cap.
         *
         * @param initial a positive duration
         * @param max a duration at least {@code initial}
         * @return this builder
         */
        public Builder backoff(Duration initial, Duration max) {
            positive("backoff initial", initial);
            if (max.compareTo(initial) < 0) {
                throw new IllegalArgumentException("backoff max " + max + " is below initial " + initial);
            }
            this.backoffInitial = initial;
            this.backoffMax = max;
            return this;
        }

        /**
         * Bounds opening a connection, waiting for {@code WorkerRegistered}, each
         * WebSocket write and the final flush (default 10 s).
         *
         * @param timeout a positive duration
         * @return this builder
         */
        public Builder connectTimeout(Duration timeout) {
            this.connectTimeout = positive("connectTimeout", timeout);
            return this;
        }

        /**
         * The Jackson mapper that binds payloads and writes results (default: a plain
         * {@link JsonMapper} that ignores unknown properties).
         *
         * @param json the mapper, with the modules your types need
         * @return this builder
         */
        public Builder objectMapper(ObjectMapper json) {
            this.json = Objects.requireNonNull(json, "json");
            return this;
        }

        /**
         * Registers the handler of one task type. The task's payload is bound to
         * {@code payloadType} with Jackson ({@code JsonNode.class} takes it as it is)
         * and the handler's return value is written as the result's payload. A payload
         * that does not bind fails the task with {@link ErrorCodes#PARSE_ERROR} before
         * the handler runs.
         *
         * @param taskType the task type, listed in the registration's supported tasks
         * @param payloadType the class the payload is bound to
         * @param handler runs each task of the type
         * @param <I> the payload type
         * @return this builder
         * @throws IllegalArgumentException if the task type already has a handler
         */
        public <I> Builder handle(String taskType, Class<I> payloadType, TaskHandler<? super I, ?> handler) {
            if (taskType.isEmpty() || handlers.containsKey(taskType)) {
                throw new IllegalArgumentException("task type '" + taskType + "' is empty or already handled");
            }
            handlers.put(taskType, new TypedHandler<>(payloadType, Objects.requireNonNull(handler, "handler")));
            return this;
        }

        /**
         * Builds the worker.
         *
         * @return the worker
         * @throws IllegalStateException if no handler was registered
         */
        public Worker build() {
            if (handlers.isEmpty()) {
                throw new IllegalStateException("a worker needs at least one handler");
            }
            Config config = new Config(
                    workerId != null ? workerId : defaultWorkerId(),
                    maxConcurrency,
                    heartbeatInterval,
                    tags,
                    reconnect,
                    backoffInitial,
                    backoffMax,
                    connectTimeout,
                    Collections.unmodifiableMap(new LinkedHashMap<>(handlers)),
                    json != null
                            ? json
                            : JsonMapper.builder()
                                    .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
                                    .build());
            return new Worker(config);
        }

        private static Duration positive(String name, Duration value) {
            if (value.isNegative() || value.isZero()) {
                throw new IllegalArgumentException(name + " must be positive, got " + value);
            }
            return value;
        }

        private static String defaultWorkerId() {
            String host = Objects.requireNonNullElse(System.getenv("HOSTNAME"), "host")
                    .replaceAll("[^A-Za-z0-9._-]+", "-")
                    .replaceAll("^[^A-Za-z0-9]+", "");
            host = host.substring(0, Math.min(host.length(), 64));
            String suffix = String.format("%08x", ThreadLocalRandom.current().nextInt());
            return "java-" + (host.isEmpty() ? "host" : host) + "-" + suffix;
        }
    }
}
