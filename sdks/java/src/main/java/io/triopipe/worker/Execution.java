package io.triopipe.worker;

import com.fasterxml.jackson.databind.JsonNode;
import io.triopipe.worker.protocol.Task;
import java.util.concurrent.Callable;
import java.util.concurrent.Future;

/**
 * One dispatched task on its handler thread. Stopping it ({@link #stop}) marks its
 * context cancelled and interrupts the thread; whatever the handler then does, the
 * session reports the stop.
 */
final class Execution implements Runnable {
    private final Task task;
    private final long receivedAt;
    private final TaskContext context;
    private final Callable<JsonNode> body;
    private final Session session;
    private Thread thread;
    private Stop stop;
    private Future<?> deadline;

    Execution(Task task, long receivedAt, TaskContext context, Callable<JsonNode> body, Session session) {
        this.task = task;
        this.receivedAt = receivedAt;
        this.context = context;
        this.body = body;
        this.session = session;
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
                value = body.call();
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
        context.cancel();
        if (thread != null) {
            thread.interrupt();
        }
    }

    /** Why the task was stopped, or {@code null}. */
    synchronized Stop stopped() {
        return stop;
    }

    /** Sets the timer that stops the task at its deadline. */
    synchronized void setDeadline(Future<?> timer) {
        deadline = timer;
    }

    synchronized void cancelDeadline() {
        deadline.cancel(false);
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
}
