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
import java.util.OptionalInt;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.SSLContext;

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
 * threads; a dispatch beyond that, or beyond its type's limit ({@link
 * Builder#maxConcurrencyByType}), is answered {@code Failed} with {@link
 * ErrorCodes#WORKER_SATURATED}. The worker sends {@code Backpressure} (throttle) when
 * its last slot is taken and again (release) when one frees up. {@code Kill}, the
 * task's {@code timeoutMs} (counted from receipt) and a non-graceful {@code Shutdown}
 * interrupt the handler's thread, and the task is reported {@code Cancelled} ({@link
 * ErrorCodes#KILLED}), {@code TimedOut} ({@link ErrorCodes#TIMEOUT}) or {@code
 * Cancelled} ({@link ErrorCodes#WORKER_SHUTTING_DOWN}) once the handler has returned.
 *
 * <p>SIGTERM and SIGINT, or {@link #drain}, drain the worker: no new task, the tasks in
 * flight finish within the drain timeout, those left are reported {@code Cancelled}
 * ({@link ErrorCodes#WORKER_SHUTTING_DOWN}, retryable), then the connection closes.
 * After a signal, the JVM then exits with status 0 (SIGTERM) or 130 (SIGINT).
 *
 * <p>A worker's settings are immutable; it may serve several times, one run at a time.
 */
public final class Worker {
    private static final System.Logger LOG = System.getLogger("io.triopipe.worker");
    private static final Duration DEFAULT_HEARTBEAT = Duration.ofSeconds(5);
    private static final Duration DEFAULT_DRAIN_TIMEOUT = Duration.ofSeconds(30);
    /** Sets the drain timeout, in milliseconds, of a worker whose builder does not. */
    static final String DRAIN_TIMEOUT_ENV = "TRIO_PIPE_DRAIN_TIMEOUT_MS";
    /** Holds the token of a worker whose builder sets none. */
    static final String TOKEN_ENV = "TRIO_PIPE_TOKEN";

    private final Config config;
    private final AtomicReference<Run> running = new AtomicReference<>();

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
     * and reported {@code Cancelled}. The connection is then closed with code 1000. It
     * also returns after {@link #drain}, and never reconnects once draining. After
     * SIGTERM or SIGINT (unless {@link Builder#handleSignals} is off) it drains the same
     * way, then exits the JVM instead of returning.
     *
     * <p>If the connection cannot be made or registered within the connect timeout, or
     * is lost without {@code Shutdown}, the tasks in flight are stopped (their results
     * cannot be delivered; the dispatcher retries them), and the worker connects again
     * with the same id after a random delay whose cap starts at the initial backoff and
     * doubles per failed attempt up to the maximum backoff; a registration resets it.
     * Without reconnection ({@link Builder#reconnect}) it throws instead.
     *
     * @param url the dispatcher's {@code ws://} or {@code wss://} URL
     * <p>The handshake carries the token ({@link Builder#token}) as {@code
     * Authorization: Bearer <token>}, and a {@code wss://} connection is verified with
     * the {@link Builder#sslContext}. A failed TLS handshake is reported as one ("TLS
     * handshake with HOST:PORT failed: ...") and retried like any failed connection.
     *
     * @throws HandshakeRefusedException at once, without reconnecting, if the
     *     dispatcher refuses the handshake with HTTP 401 or 403
     * @throws RegistrationRefusedException at once, without reconnecting, if the
     *     dispatcher closes the connection with code 1008 before {@code
     *     WorkerRegistered}
     * @throws WorkerConnectionException if the connection failed or was lost and the
     *     worker may not reconnect
     * @throws InterruptedException if the calling thread is interrupted: every handler
     *     is interrupted and the connection aborted
     * @throws IllegalArgumentException if the URL is not a WebSocket URL, or an
     *     SSLContext was given for a {@code ws://} URL
     * @throws IllegalStateException if the token is taken from {@code TRIO_PIPE_TOKEN}
     *     and cannot be a header
     * @throws IllegalStateException if the worker is running already
     */
    public void runWebSocket(URI url) throws WorkerConnectionException, InterruptedException {
        String scheme = url.getScheme();
        if (!"ws".equalsIgnoreCase(scheme) && !"wss".equalsIgnoreCase(scheme)) {
            throw new IllegalArgumentException("expected a ws:// or wss:// URL, got " + url);
        }
        if (config.sslContext() != null && !"wss".equalsIgnoreCase(scheme)) {
            throw new IllegalArgumentException("an SSLContext is for wss:// URLs, got " + url);
        }
        // A stdio worker has no handshake: only this run reads the variable.
        String token = config.token() != null ? config.token() : Builder.tokenFromEnv(System.getenv(TOKEN_ENV));
        Run run = begin();
        try {
            runWebSocket(url, token, run);
        } finally {
            end(run);
        }
    }

    private void runWebSocket(URI url, String token, Run run)
            throws WorkerConnectionException, InterruptedException {
        HttpClient.Builder clientBuilder = HttpClient.newBuilder().connectTimeout(config.connectTimeout());
        if (config.sslContext() != null) {
            clientBuilder.sslContext(config.sslContext());
        }
        HttpClient client = clientBuilder.build();
        Backoff backoff = new Backoff(config.backoffInitial(), config.backoffMax());
        long startedAt = System.nanoTime();
        Duration heartbeat = Objects.requireNonNullElse(config.heartbeatInterval(), DEFAULT_HEARTBEAT);
        try (WorkerThreads threads = new WorkerThreads(config.maxConcurrency())) {
            while (!run.isDraining()) {
                Session session = null;
                SessionEnd end;
                String refusedRegistration = null;
                try {
                    WebSocketTransport transport = WebSocketTransport.connect(
                            client, url, config.connectTimeout(), token, run.draining());
                    session = new Session(config, transport, threads, startedAt, heartbeat);
                    transport.start(session);
                    session.register(config.connectTimeout());
                    run.attach(session);
                    end = serve(session, transport);
                    if (!session.wasRegistered()) {
                        refusedRegistration = transport.policyViolation();
                    }
                } catch (HandshakeRefusedException e) {
                    if (e.isFatal()) {
                        throw e;
                    }
                    end = new SessionEnd(false, e.getMessage());
                } catch (IOException e) {
                    end = new SessionEnd(false, "could not connect to " + url + ": " + e.getMessage());
                }
                if (refusedRegistration != null) {
                    throw new RegistrationRefusedException(refusedRegistration);
                }
                if (end.shutdown() || run.isDraining()) {
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
                run.sleep(delay);
            }
            LOG.log(INFO, "worker {0} drained while not connected", workerId());
        }
    }

    /**
     * Serves the dispatcher that spawned this process, over stdin and stdout.
     *
     * <p>While it serves, {@code System.out} is redirected to {@code System.err}, so
     * that nothing but protocol lines reaches stdout; log to stderr too (the default of
     * {@code java.util.logging}). See {@link #serveStdio(InputStream, OutputStream)},
     * also for SIGTERM and SIGINT.
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
     * graceful: once they have been stopped and reported {@code Cancelled}), after
     * {@link #drain} (likewise), or when {@code in} ends or {@code out} fails without
     * {@code Shutdown}: the tasks in flight are then stopped and their results dropped.
     * After SIGTERM or SIGINT (unless {@link Builder#handleSignals} is off) it drains,
     * then exits the JVM instead of returning. Neither stream is closed; the thread
     * reading {@code in} ends at its end.
     *
     * @param in where the dispatcher's messages come from
     * @param out where this worker's messages go
     * @throws InterruptedException if the calling thread is interrupted: every handler
     *     is interrupted
     * @throws IllegalStateException if the worker is running already
     */
    public void serveStdio(InputStream in, OutputStream out) throws InterruptedException {
        Run run = begin();
        try (WorkerThreads threads = new WorkerThreads(config.maxConcurrency())) {
            StdioTransport transport = new StdioTransport(in, out, config.connectTimeout());
            Session session = new Session(config, transport, threads, System.nanoTime(), config.heartbeatInterval());
            session.serveUnregistered();
            transport.start(session);
            run.attach(session);
            SessionEnd end = serve(session, transport);
            LOG.log(INFO, "worker {0} stopped: {1}", workerId(), end.reason());
        } finally {
            end(run);
        }
    }

    /**
     * Drains the run in progress, from any thread, as SIGTERM does:
     *
     * <ol>
     *   <li>sends {@code Backpressure} with {@code shouldThrottle} and {@code draining}
     *       true, and answers every {@code TaskDispatch} from then on {@code Failed}
     *       ({@link ErrorCodes#WORKER_SHUTTING_DOWN}, retryable);
     *   <li>lets the tasks in flight finish and sends their results, for at most {@code
     *       grace};
     *   <li>then stops those left (as {@code Kill} does) and reports each {@code
     *       Cancelled} ({@link ErrorCodes#WORKER_SHUTTING_DOWN}, retryable) at once,
     *       without waiting for their handlers to return;
     *   <li>closes the connection with code 1000 (WebSocket) or stops writing (stdio),
     *       and the run method returns. It never reconnects.
     * </ol>
     *
     * <p>Returns at once. A second call can only bring the deadline nearer: {@code
     * drain(Duration.ZERO)} stops at once.
     *
     * @param grace how long the tasks in flight may still run
     * @return false if the worker was not running (nothing happens)
     * @throws IllegalArgumentException if {@code grace} is negative
     */
    public boolean drain(Duration grace) {
        if (grace.isNegative()) {
            throw new IllegalArgumentException("grace must not be negative, got " + grace);
        }
        Run run = running.get();
        if (run == null) {
            return false;
        }
        run.drain(grace, "drain requested");
        return true;
    }

    /**
     * Drains the run in progress with the worker's drain timeout ({@link
     * Builder#drainTimeout}); see {@link #drain(Duration)}.
     *
     * @return false if the worker was not running (nothing happens)
     */
    public boolean drain() {
        return drain(config.drainTimeout());
    }

    private Run begin() {
        Run run = new Run(config.drainTimeout());
        if (!running.compareAndSet(null, run)) {
            throw new IllegalStateException("worker " + workerId() + " is running already");
        }
        if (config.handleSignals()) {
            Signals.enter(run);
        }
        return run;
    }

    /**
     * After a signal, once the last run of the JVM has ended: exits (the run has logged
     * how it ended, the one line of this step).
     */
    private void end(Run run) {
        running.set(null);
        if (config.handleSignals()) {
            OptionalInt status = Signals.leave(run);
            if (status.isPresent()) {
                System.exit(status.getAsInt());
            }
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
        private Map<String, Integer> maxConcurrencyByType = Map.of();
        private Duration heartbeatInterval;
        private List<String> tags = List.of();
        private boolean reconnect = true;
        private Duration backoffInitial = Duration.ofMillis(100);
        private Duration backoffMax = Duration.ofSeconds(10);
        private Duration connectTimeout = Duration.ofSeconds(10);
        private Duration drainTimeout;
        private boolean handleSignals = true;
        private String token;
        private SSLContext sslContext;
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
         * How many tasks of some types run at once, below {@link #maxConcurrency} (default:
         * none, every type is limited by {@code maxConcurrency} alone). Sent in the
         * registration, so that the dispatcher respects it, and enforced by the worker: a
         * dispatch beyond a type's limit is answered {@code Failed}, {@link
         * ErrorCodes#WORKER_SATURATED}, retryable. {@link #build} checks that each type
         * has a handler and each limit is at most {@code maxConcurrency}.
         *
         * @param limits task type to its limit, at least 1 each
         * @return this builder
         * @throws IllegalArgumentException if a limit is below 1
         */
        public Builder maxConcurrencyByType(Map<String, Integer> limits) {
            Map<String, Integer> copy = new LinkedHashMap<>();
            limits.forEach((type, limit) -> {
                Objects.requireNonNull(type, "task type");
                Objects.requireNonNull(limit, "limit");
                if (limit < 1) {
                    throw new IllegalArgumentException(
                            "maxConcurrencyByType: the limit of '" + type + "' must be >= 1, got " + limit);
                }
                copy.put(type, limit);
            });
            this.maxConcurrencyByType = Collections.unmodifiableMap(copy);
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
         * How long the tasks in flight may still run once the worker drains (SIGTERM,
         * SIGINT, {@link Worker#drain()}) before those left are cancelled. Default: the
         * environment variable {@code TRIO_PIPE_DRAIN_TIMEOUT_MS} (milliseconds) if set,
         * else 30 s.
         *
         * @param timeout zero or more
         * @return this builder
         */
        public Builder drainTimeout(Duration timeout) {
            if (timeout.isNegative()) {
                throw new IllegalArgumentException("drainTimeout must not be negative, got " + timeout);
            }
            this.drainTimeout = timeout;
            return this;
        }

        /**
         * Whether {@link Worker#runWebSocket} and {@link Worker#serveStdio} handle SIGTERM
         * and SIGINT while they run (default true): the first signal drains the worker,
         * a second stops it at once, and once drained the JVM exits with status 0
         * (SIGTERM) or 130 (SIGINT). Turn it off when the application handles signals
         * itself, and call {@link Worker#drain()} from there.
         *
         * @param handleSignals false to leave the signals alone
         * @return this builder
         */
        public Builder handleSignals(boolean handleSignals) {
            this.handleSignals = handleSignals;
            return this;
        }

        /**
         * The token sent in every WebSocket opening handshake as {@code Authorization:
         * Bearer <token>}, never in the URL and never logged (default: the environment
         * variable {@code TRIO_PIPE_TOKEN}, if set and not empty). A stdio worker has no
         * handshake and ignores it.
         *
         * @param token printable ASCII without spaces
         * @return this builder
         * @throws IllegalArgumentException if the token cannot be an HTTP header value
         *     (the message does not show it)
         */
        public Builder token(String token) {
            this.token = checkToken(token, "the token");
            return this;
        }

        /**
         * The TLS context of {@code wss://} connections: the CAs it trusts and the
         * client certificate it presents, for mutual TLS (default: the JDK's; see {@link
         * PemTls#sslContext}). {@link Worker#runWebSocket} refuses it for a {@code ws://}
         * URL.
         *
         * @param sslContext an initialised context
         * @return this builder
         */
        public Builder sslContext(SSLContext sslContext) {
            this.sslContext = Objects.requireNonNull(sslContext, "sslContext");
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
         * @throws IllegalStateException if no handler was registered, a per-type limit
         *     names a type without a handler or exceeds {@code maxConcurrency}, {@code
         *     TRIO_PIPE_DRAIN_TIMEOUT_MS} is needed and not a whole number of milliseconds
         */
        public Worker build() {
            if (handlers.isEmpty()) {
                throw new IllegalStateException("a worker needs at least one handler");
            }
            maxConcurrencyByType.forEach((type, limit) -> {
                if (!handlers.containsKey(type)) {
                    throw new IllegalStateException("maxConcurrencyByType: no handler for task type '" + type + "'");
                }
                if (limit > maxConcurrency) {
                    throw new IllegalStateException("maxConcurrencyByType: the limit of '" + type + "', " + limit
                            + ", is above maxConcurrency " + maxConcurrency);
                }
            });
            Config config = new Config(
                    workerId != null ? workerId : defaultWorkerId(),
                    maxConcurrency,
                    maxConcurrencyByType,
                    heartbeatInterval,
                    tags,
                    reconnect,
                    backoffInitial,
                    backoffMax,
                    connectTimeout,
                    drainTimeout != null ? drainTimeout : drainTimeoutFromEnv(System.getenv(DRAIN_TIMEOUT_ENV)),
                    handleSignals,
                    token,
                    sslContext,
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

        /** The drain timeout that {@code TRIO_PIPE_DRAIN_TIMEOUT_MS} sets: 30 s when unset. */
        static Duration drainTimeoutFromEnv(String value) {
            if (value == null) {
                return DEFAULT_DRAIN_TIMEOUT;
            }
            try {
                long ms = Long.parseLong(value.strip());
                if (ms >= 0) {
                    return Duration.ofMillis(ms);
                }
            } catch (NumberFormatException e) {
                // reported below
            }
            throw new IllegalStateException(
                    DRAIN_TIMEOUT_ENV + " must be a whole number of milliseconds >= 0, got '" + value + "'");
        }

        /** The token in {@code TRIO_PIPE_TOKEN}: none when unset or empty. */
        static String tokenFromEnv(String value) {
            if (value == null || value.isEmpty()) {
                return null;
            }
            try {
                return checkToken(value, TOKEN_ENV);
            } catch (IllegalArgumentException e) {
                throw new IllegalStateException(e.getMessage(), e);
            }
        }

        private static String checkToken(String token, String what) {
            Objects.requireNonNull(token, "token");
            if (token.isEmpty() || !token.chars().allMatch(c -> c >= 0x21 && c <= 0x7e)) {
                throw new IllegalArgumentException(
                        what + " must be printable ASCII characters without spaces, and not empty");
            }
            return token;
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
