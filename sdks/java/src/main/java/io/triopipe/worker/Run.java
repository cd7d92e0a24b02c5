package io.triopipe.worker;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * One call of {@link Worker#runWebSocket} or {@link Worker#serveStdio}: the session it
 * serves now (none between two WebSocket connections) and whether it drains. A drain
 * outlives the session it started in: a run that drains never connects again.
 */
final class Run {
    /** About 146 years: a longer grace is no different, and its nanoseconds fit a long. */
    private static final Duration FOREVER = Duration.ofDays(365L * 146);

    private final Duration drainTimeout;
    private final CompletableFuture<Void> draining = new CompletableFuture<>();
    private Session session; // guarded by this
    private long drainDeadline; // guarded by this; System.nanoTime(), once draining
    private String drainCause; // guarded by this

    Run(Duration drainTimeout) {
        this.drainTimeout = drainTimeout;
    }

    /** Drains with the worker's drain timeout. */
    void drain(String cause) {
        drain(drainTimeout, cause);
    }

    /**
     * Drains the session, now or as soon as it is attached, with {@code grace} for the
     * tasks in flight. A later call only brings the deadline nearer ({@link
     * Duration#ZERO}: cancel what is left at once).
     */
    void drain(Duration grace, String cause) {
        synchronized (this) {
            long deadline = System.nanoTime() + (grace.compareTo(FOREVER) > 0 ? FOREVER : grace).toNanos();
            if (draining.isDone() && deadline - drainDeadline >= 0) {
                return;
            }
            drainDeadline = deadline;
            drainCause = cause;
            if (session != null) {
                session.drain(deadline, cause);
            }
        }
        draining.complete(null);
    }

    /** Serves {@code session} from now on: it drains at once if the run does. */
    synchronized void attach(Session session) {
        this.session = session;
        if (draining.isDone()) {
            session.drain(drainDeadline, drainCause);
        }
    }

    boolean isDraining() {
        return draining.isDone();
    }

    /** Completes when a drain is requested. */
    CompletableFuture<Void> draining() {
        return draining;
    }

    /** Waits for {@code delay}, or until a drain is requested. */
    void sleep(Duration delay) throws InterruptedException {
        try {
            draining.get(delay.toNanos(), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            // slept the whole delay
        } catch (ExecutionException e) {
            throw new IllegalStateException(e); // it never fails
        }
    }
}
