package io.triopipe.worker;

import com.fasterxml.jackson.databind.JsonNode;
import io.triopipe.worker.protocol.Task;
import io.triopipe.worker.protocol.TaskProgress;
import java.time.Instant;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * One dispatched task on its handler thread. Stopping it ({@link #stop}) marks its
 * context cancelled and interrupts the thread; whatever the handler then does, the
 * session reports the stop.
 *
 * <p>It owns the task's local deadline: {@code timeoutMs} from receipt, moved later by
 * {@link TaskContext#extendDeadline}. The timer that stops the task checks the deadline
 * when it fires, so an extension racing with it cannot be lost.
 */
final class Execution implements Runnable {
    private final Task task;
    private final TypedHandler<?> handler;
    private final Session session;
    private final ScheduledExecutorService timers;
    private final long receivedAt;
    private final TaskContext context;
    private Thread thread;
    private Stop stop;
    private long deadline; // System.nanoTime()
    private Future<?> timer;

    /**
     * Arms the deadline at once.
     *
     * @param receivedAt {@link System#nanoTime()} when the dispatch was received
     */
    Execution(
            Task task,
            TypedHandler<?> handler,
            Session session,
            ScheduledExecutorService timers,
            long receivedAt,
            String workerId) {
        this.task = task;
        this.handler = handler;
        this.session = session;
        this.timers = timers;
        this.receivedAt = receivedAt;
        long timeoutMs = task.metadata().timeoutMs();
        this.context = new TaskContext(this, wallClock(receivedAt, timeoutMs), workerId);
        synchronized (this) {
            setDeadline(receivedAt + TimeUnit.MILLISECONDS.toNanos(timeoutMs));
        }
    }

    Task task() {
        return task;
    }

    /** {@link System#nanoTime()} when the dispatch was received. */
    long receivedAt() {
        return receivedAt;
    }

    @Override
    public void run() {
        JsonNode value = null;
        Throwable error = null;
        if (enter()) {
            try {
                value = handler.run(session.json(), context, task.payload());
            } catch (Throwable e) { // every outcome is reported, even an Error
                error = e;
            } finally {
                leave();
            }
        }
        session.finished(this, value, error);
    }

    /** Stops the task, unless it was stopped already; the first reason is kept. */
    synchronized void stop(Stop reason) {
        if (stop != null) {
            return;
        }
        stop = reason;
        timer.cancel(false);
        context.cancel();
        if (thread != null) {
            thread.interrupt();
        }
    }

    /** Why the task was stopped, or {@code null}. */
    synchronized Stop stopped() {
        return stop;
    }

    /** Forgets the deadline: the task has been reported. */
    synchronized void cancelDeadline() {
        timer.cancel(false);
    }

    /** Moves the deadline to {@code extendMs} from now, unless it is later already. */
    synchronized void extendDeadline(long extendMs) {
        if (stop != null) {
            return;
        }
        long now = System.nanoTime();
        long extended = now + TimeUnit.MILLISECONDS.toNanos(extendMs);
        if (extended - deadline > 0) {
            timer.cancel(false);
            setDeadline(extended);
            context.setDeadline(wallClock(now, extendMs));
        }
    }

    /** Sends a progress report for this task; see {@link Session#report}. */
    void report(TaskProgress progress, Long extendMs) {
        session.report(this, progress, extendMs);
    }

    /** Arms the timer for {@code nanoTime}; holds this object's lock. */
    private void setDeadline(long nanoTime) {
        deadline = nanoTime;
        timer = timers.schedule(this::deadlineReached, nanoTime - System.nanoTime(), TimeUnit.NANOSECONDS);
    }

    private synchronized void deadlineReached() {
        if (System.nanoTime() - deadline >= 0) { // else extended while the timer fired
            long timeoutMs = task.metadata().timeoutMs();
            long allowedMs = TimeUnit.NANOSECONDS.toMillis(deadline - receivedAt);
            stop(Stop.timedOut(timeoutMs, allowedMs));
        }
    }

    private synchronized boolean enter() {
        if (stop != null) {
            return false; // stopped before it started: the handler never runs
        }
        thread = Thread.currentThread();
        return true;
    }

    private synchronized void leave() {
        thread = null;
        Thread.interrupted(); // the pool thread goes back clean
    }

    /** The wall-clock time {@code ms} after the {@link System#nanoTime()} {@code from}. */
    private static Instant wallClock(long from, long ms) {
        return Instant.now().minusNanos(System.nanoTime() - from).plusMillis(ms);
    }
}
