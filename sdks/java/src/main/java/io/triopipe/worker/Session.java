package io.triopipe.worker;

import static java.lang.System.Logger.Level.DEBUG;
import static java.lang.System.Logger.Level.INFO;
import static java.lang.System.Logger.Level.WARNING;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.triopipe.worker.protocol.Backpressure;
import io.triopipe.worker.protocol.BackpressureSignal;
import io.triopipe.worker.protocol.Codec;
import io.triopipe.worker.protocol.Heartbeat;
import io.triopipe.worker.protocol.HeartbeatPayload;
import io.triopipe.worker.protocol.Kill;
import io.triopipe.worker.protocol.Message;
import io.triopipe.worker.protocol.ProtocolException;
import io.triopipe.worker.protocol.Shutdown;
import io.triopipe.worker.protocol.Task;
import io.triopipe.worker.protocol.TaskDispatch;
import io.triopipe.worker.protocol.TaskError;
import io.triopipe.worker.protocol.TaskProgress;
import io.triopipe.worker.protocol.TaskResult;
import io.triopipe.worker.protocol.TaskResultMessage;
import io.triopipe.worker.protocol.TaskStatus;
import io.triopipe.worker.protocol.WorkerRegister;
import io.triopipe.worker.protocol.WorkerRegistered;
import io.triopipe.worker.protocol.WorkerRegistration;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * The protocol on one connection, whatever the transport: registration, tasks on the
 * handler pool with their deadlines and progress reports, Kill, heartbeats,
 * backpressure, shutdown and drain.
 *
 * <p>Everything that changes the state holds {@code lock}, and every frame is queued on
 * the transport while holding it, so frames go out in the order the state changed: a
 * result before the {@code Backpressure} its freed slot causes.
 */
final class Session {
    private static final System.Logger LOG = System.getLogger("io.triopipe.worker");

    private final Config config;
    private final Transport transport;
    private final WorkerThreads threads;
    private final long startedAt;
    private final Duration heartbeatInterval;
    private final Object lock = new Object();
    private final Map<UUID, Execution> active = new HashMap<>();
    private final Map<String, Integer> activeByType = new HashMap<>();
    private final CompletableFuture<Void> registered = new CompletableFuture<>();
    private final CompletableFuture<SessionEnd> ended = new CompletableFuture<>();
    private boolean throttled;
    /** Why no new task is taken (Shutdown, drain), or {@code null} while tasks are taken. */
    private String stopping;
    private boolean draining;
    private Future<?> drainTimer;
    private String lost;
    private Future<?> heartbeats;

    /**
     * @param startedAt {@link System#nanoTime()} when the worker started (for uptime)
     * @param heartbeatInterval time between heartbeats, or {@code null} for none
     */
    Session(Config config, Transport transport, WorkerThreads threads, long startedAt, Duration heartbeatInterval) {
        this.config = config;
        this.transport = transport;
        this.threads = threads;
        this.startedAt = startedAt;
        this.heartbeatInterval = heartbeatInterval;
    }

    // -- lifecycle, driven by the Worker --------------------------------------------

    /**
     * Sends {@code WorkerRegister}; tasks are served once the dispatcher accepts it:
     * {@code WorkerRegistered}, or a {@code TaskDispatch} that comes first (served; a
     * rust-pipe 0.1 dispatcher never answers), or silence for {@code timeout} (an idle
     * rust-pipe dispatcher sends nothing; one that refuses closes the connection),
     * after which the first heartbeat goes at once.
     */
    void register(Duration timeout) {
        Map<String, Long> limits = new LinkedHashMap<>();
        config.maxConcurrencyByType().forEach((type, limit) -> limits.put(type, (long) limit));
        WorkerRegistration registration = new WorkerRegistration(
                config.workerId(),
                List.copyOf(config.handlers().keySet()),
                config.maxConcurrency(),
                Config.LANGUAGE,
                config.tags(),
                limits);
        send(new WorkerRegister(registration));
        threads.timers().schedule(() -> registrationTimedOut(timeout), timeout.toNanos(), TimeUnit.NANOSECONDS);
    }

    /** Serves at once, without registering (a spawned stdio worker). */
    void serveUnregistered() {
        onRegistered(false);
    }

    /** Completes when the session is over: shut down, or lost and every handler returned. */
    CompletableFuture<SessionEnd> ended() {
        return ended;
    }

    /** Whether the registration was accepted, or was not needed. */
    boolean wasRegistered() {
        return registered.isDone();
    }

    /**
     * Drains: takes no new task and tells the dispatcher so once ({@code Backpressure}
     * with {@code shouldThrottle} and {@code draining}); the session ends when the tasks
     * in flight have finished or, at {@code deadline}, once those left are reported
     * {@code Cancelled} ({@link ErrorCodes#WORKER_SHUTTING_DOWN}, retryable) without
     * waiting for their handlers. Before registration nothing can be in flight: the
     * session ends at once. A later call moves the deadline; the caller only brings it
     * nearer. A deadline that has passed, once the session is over, aborts the closing
     * of the connection.
     *
     * @param deadline {@link System#nanoTime()} when the tasks left are cancelled
     * @param cause what started the drain, for the log and the cancelled tasks' message
     */
    void drain(long deadline, String cause) {
        synchronized (lock) {
            if (isOver()) {
                if (deadline - System.nanoTime() <= 0) {
                    transport.abort(); // stop at once: do not wait for the closing handshake
                }
                return;
            }
            if (stopping == null) {
                stopping = "drained (" + cause + ")";
            }
            if (!registered.isDone()) {
                checkEnd();
                return;
            }
            long left = deadline - System.nanoTime();
            if (!draining) {
                draining = true;
                LOG.log(
                        INFO,
                        "{0}: draining {1} tasks in flight for at most {2} ms",
                        cause,
                        active.size(),
                        Long.toString(TimeUnit.NANOSECONDS.toMillis(Math.max(0, left))));
                double load = (double) active.size() / config.maxConcurrency();
                send(new Backpressure(new BackpressureSignal(config.workerId(), load, true, true)));
            }
            if (drainTimer != null) {
                drainTimer.cancel(false);
            }
            if (left <= 0) {
                cancelRemaining("the worker is shutting down (" + cause + ")");
            } else {
                String message = "the worker is shutting down (" + cause + ") and its drain timeout passed";
                drainTimer = threads.timers().schedule(() -> drainTimedOut(message), left, TimeUnit.NANOSECONDS);
            }
            checkEnd();
        }
    }

    /**
     * Ends the session: stops every task (their results are dropped) and completes
     * {@link #ended()} once their handlers have returned. Idempotent.
     */
    void lose(String reason) {
        synchronized (lock) {
            if (lost != null) {
                return;
            }
            lost = reason;
            LOG.log(DEBUG, "connection lost: {0}", reason);
            for (Execution execution : active.values()) {
                execution.stop(Stop.lost(reason));
            }
            checkEnd();
        }
    }

    // -- from the transport ---------------------------------------------------------

    void onFrame(String frame) {
        long receivedAt = System.nanoTime();
        Message message;
        try {
            message = Codec.decode(frame);
        } catch (ProtocolException e) {
            LOG.log(WARNING, "ignoring a malformed frame from the dispatcher: {0}", e.getMessage());
            return;
        }
        synchronized (lock) {
            if (isOver()) {
                LOG.log(DEBUG, "ignoring {0} received after the session ended", message.type());
            } else if (!registered.isDone() && message instanceof TaskDispatch early) {
                LOG.log(DEBUG, "a task came before WorkerRegistered (as from rust-pipe 0.1): the registration is accepted");
                accepted(false);
                onDispatch(early.task(), receivedAt);
            } else if (!registered.isDone() && !(message instanceof WorkerRegistered)) {
                LOG.log(WARNING, "ignoring {0} received before the registration was accepted", message.type());
            } else if (message instanceof TaskDispatch dispatch) {
                onDispatch(dispatch.task(), receivedAt);
            } else if (message instanceof Kill kill) {
                onKill(kill);
            } else if (message instanceof Shutdown shutdown) {
                onShutdown(shutdown.graceful());
            } else if (message instanceof WorkerRegistered acknowledged) {
                onWorkerRegistered(acknowledged);
            } else {
                LOG.log(DEBUG, "ignoring {0}", message.type());
            }
        }
    }

    /**
     * The dispatcher closed its side, which leaves ours open (stdin): a loss, unless it
     * comes after Shutdown or during a drain.
     */
    void onInputClosed(String reason) {
        synchronized (lock) {
            if (stopping != null) {
                LOG.log(DEBUG, "{0} while shutting down; finishing in-flight tasks", reason);
            } else {
                lose(reason);
            }
        }
    }

    void onBroken(String reason) {
        lose(reason);
    }

    // -- messages -----------------------------------------------------------------

    private void onWorkerRegistered(WorkerRegistered message) {
        if (registered.isDone()) {
            LOG.log(DEBUG, "ignoring a repeated WorkerRegistered");
            return;
        }
        if (!message.workerId().equals(config.workerId())) {
            LOG.log(
                    WARNING,
                    "dispatcher acknowledged worker id {0}, we registered {1}",
                    message.workerId(),
                    config.workerId());
        }
        accepted(false);
    }

    private void registrationTimedOut(Duration timeout) {
        synchronized (lock) {
            if (!registered.isDone() && !isOver()) {
                LOG.log(
                        DEBUG,
                        "no answer to WorkerRegister within {0} ms (as from an idle rust-pipe 0.1 dispatcher): "
                                + "the registration is taken as accepted",
                        timeout.toMillis());
                accepted(true);
            }
        }
    }

    /** The dispatcher accepted the registration; {@code silently}: it said nothing at all. */
    private void accepted(boolean silently) {
        LOG.log(INFO, "registered as {0} for {1}", config.workerId(), config.handlers().keySet());
        onRegistered(silently);
    }

    /** Serves from now on; the first heartbeat goes at once if {@code beatAtOnce}. */
    private void onRegistered(boolean beatAtOnce) {
        synchronized (lock) {
            registered.complete(null);
            if (heartbeatInterval != null) {
                long nanos = heartbeatInterval.toNanos();
                long first = beatAtOnce ? 0 : nanos;
                heartbeats = threads.timers().scheduleAtFixedRate(this::heartbeat, first, nanos, TimeUnit.NANOSECONDS);
            }
        }
    }

    private void onDispatch(Task task, long receivedAt) {
        if (active.containsKey(task.id())) {
            LOG.log(WARNING, "ignoring a second dispatch of running task {0}", task.id());
            return;
        }
        String type = task.taskType();
        TypedHandler<?> handler = config.handlers().get(type);
        Integer typeLimit = config.maxConcurrencyByType().get(type);
        int ofType = activeByType.getOrDefault(type, 0);
        if (stopping != null) {
            reject(task, ErrorCodes.WORKER_SHUTTING_DOWN, "the worker is shutting down", true);
        } else if (handler == null) {
            reject(task, ErrorCodes.UNKNOWN_TASK_TYPE, "no handler for task type '" + type + "'", false);
        } else if (active.size() >= config.maxConcurrency()) {
            String message = "the worker is running " + active.size() + " tasks, its maximum";
            reject(task, ErrorCodes.WORKER_SATURATED, message, true);
        } else if (typeLimit != null && ofType >= typeLimit) {
            String message = "the worker is running " + ofType + " '" + type + "' tasks, its maximum for that type";
            reject(task, ErrorCodes.WORKER_SATURATED, message, true);
        } else {
            Execution execution = new Execution(task, handler, this, threads.timers(), receivedAt, config.workerId());
            active.put(task.id(), execution);
            activeByType.merge(type, 1, Integer::sum);
            threads.handlers().execute(execution);
            updateBackpressure();
        }
    }

    private void onKill(Kill kill) {
        Execution execution = active.get(kill.taskId());
        if (execution == null) {
            LOG.log(DEBUG, "ignoring Kill for task {0}: not running", kill.taskId());
            return;
        }
        execution.stop(Stop.killed(kill.reason()));
    }

    private void onShutdown(boolean graceful) {
        if (stopping == null) {
            stopping = "shut down by the dispatcher";
        }
        LOG.log(
                INFO,
                "dispatcher requested {0} shutdown; {1} tasks in flight",
                graceful ? "graceful" : "immediate",
                active.size());
        if (!graceful) {
            for (Execution execution : active.values()) {
                execution.stop(Stop.shutDown());
            }
        }
        checkEnd();
    }

    // -- results ------------------------------------------------------------------

    /** Called on the handler thread when the handler has returned (or never ran). */
    void finished(Execution execution, JsonNode value, Throwable error) {
        String frame = resultFrame(execution, value, error);
        synchronized (lock) {
            if (!remove(execution)) {
                return; // reported already, at the end of a drain
            }
            if (lost == null) {
                transport.send(frame);
                updateBackpressure();
            }
            checkEnd();
        }
    }

    /**
     * Sends a progress report ({@code Running}) for a task whose handler runs, with
     * {@code extendMs} also moving the task's own deadline. Dropped once the task is
     * stopped or reported, or the connection lost.
     */
    void report(Execution execution, TaskProgress progress, Long extendMs) {
        synchronized (lock) {
            if (isOver() || active.get(execution.task().id()) != execution || execution.stopped() != null) {
                LOG.log(DEBUG, "dropping a progress report of task {0}: it is stopped", execution.task().id());
                return;
            }
            if (extendMs != null) {
                execution.extendDeadline(extendMs);
            }
            TaskResult report = new TaskResult(
                    execution.task().id(),
                    TaskStatus.RUNNING,
                    null,
                    null,
                    elapsedMs(execution),
                    config.workerId(),
                    progress,
                    extendMs);
            send(new TaskResultMessage(report));
        }
    }

    ObjectMapper json() {
        return config.json();
    }

    /** Forgets a task that is reported; false if it was forgotten already. */
    private boolean remove(Execution execution) {
        Task task = execution.task();
        if (!active.remove(task.id(), execution)) {
            return false;
        }
        execution.cancelDeadline();
        activeByType.computeIfPresent(task.taskType(), (type, count) -> count == 1 ? null : count - 1);
        return true;
    }

    private void drainTimedOut(String message) {
        synchronized (lock) {
            if (!isOver()) {
                cancelRemaining(message);
                checkEnd();
            }
        }
    }

    /**
     * Stops the tasks still in flight and reports each at once, by the first reason it was
     * stopped for: the worker is about to close, so it does not wait for their handlers.
     */
    private void cancelRemaining(String message) {
        if (active.isEmpty()) {
            return;
        }
        LOG.log(INFO, "cancelling {0} tasks: {1}", active.size(), message);
        for (Execution execution : List.copyOf(active.values())) {
            execution.stop(Stop.shuttingDown(message));
            remove(execution);
            if (lost == null) {
                transport.send(resultFrame(execution, null, null));
            }
        }
    }

    private String resultFrame(Execution execution, JsonNode value, Throwable error) {
        Task task = execution.task();
        Stop stop = execution.stopped();
        if (stop != null) {
            return result(execution, stop.status(), null, stop.error());
        }
        if (error instanceof TaskFailure failure) {
            LOG.log(INFO, "task {0} ({1}) failed: {2}", task.id(), task.taskType(), failure.getMessage());
            TaskError taskError = new TaskError(failure.code(), failure.getMessage(), failure.retryable());
            return result(execution, TaskStatus.FAILED, null, taskError);
        }
        if (error != null) {
            LOG.log(WARNING, "task " + task.id() + " (" + task.taskType() + ") threw", error);
            String name = error.getClass().getSimpleName();
            String message = error.getMessage() == null ? name : name + ": " + error.getMessage();
            TaskError taskError = new TaskError(ErrorCodes.HANDLER_ERROR, message, true);
            return result(execution, TaskStatus.FAILED, null, taskError);
        }
        try {
            return result(execution, TaskStatus.COMPLETED, value, null);
        } catch (IllegalArgumentException e) { // a NaN or an infinity in the result
            LOG.log(WARNING, "task {0} ({1}) returned a non-JSON result", task.id(), task.taskType());
            TaskError taskError =
                    new TaskError(ErrorCodes.PARSE_ERROR, "result payload is not JSON: " + e.getMessage(), false);
            return result(execution, TaskStatus.FAILED, null, taskError);
        }
    }

    private String result(Execution execution, TaskStatus status, JsonNode payload, TaskError error) {
        return encodeResult(execution.task(), status, payload, error, elapsedMs(execution));
    }

    private static long elapsedMs(Execution execution) {
        long elapsed = System.nanoTime() - execution.receivedAt();
        return Math.max(0, Math.round(elapsed / 1e6));
    }

    private void reject(Task task, String code, String message, boolean retryable) {
        LOG.log(INFO, "rejecting task {0} ({1}): {2}", task.id(), task.taskType(), code);
        TaskError error = new TaskError(code, message, retryable);
        transport.send(encodeResult(task, TaskStatus.FAILED, null, error, 0));
    }

    private String encodeResult(Task task, TaskStatus status, JsonNode payload, TaskError error, long durationMs) {
        TaskResult result = new TaskResult(task.id(), status, payload, error, durationMs, config.workerId());
        return Codec.encode(new TaskResultMessage(result));
    }

    // -- signals ------------------------------------------------------------------

    /**
     * Sends {@code Backpressure} when the worker becomes full, and when it is no longer
     * full; nothing once it drains (nothing lifts that signal).
     */
    private void updateBackpressure() {
        if (draining) {
            return;
        }
        boolean full = active.size() >= config.maxConcurrency();
        if (full != throttled) {
            throttled = full;
            double load = (double) active.size() / config.maxConcurrency();
            send(new Backpressure(new BackpressureSignal(config.workerId(), load, full)));
        }
    }

    private void heartbeat() {
        synchronized (lock) {
            if (isOver()) {
                return;
            }
            long uptime = TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - startedAt);
            send(new Heartbeat(
                    new HeartbeatPayload(config.workerId(), active.size(), config.maxConcurrency(), uptime)));
        }
    }

    private void send(Message message) {
        transport.send(Codec.encode(message));
    }

    /** Whether nothing more is sent: the connection is lost, or the session has ended. */
    private boolean isOver() {
        return lost != null || ended.isDone();
    }

    /** Ends the session once it is shut down, drained or lost and no task is in flight. */
    private void checkEnd() {
        if (!active.isEmpty() || (stopping == null && lost == null)) {
            return;
        }
        if (heartbeats != null) {
            heartbeats.cancel(false);
        }
        if (drainTimer != null) {
            drainTimer.cancel(false);
        }
        ended.complete(new SessionEnd(stopping != null, lost != null ? lost : stopping));
    }
}
