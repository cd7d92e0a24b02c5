package io.triopipe.worker;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The threads of one running worker: a pool of {@code maxConcurrency} handler threads
 * and one timer thread (deadlines, heartbeats). All are daemon threads, so a worker
 * never keeps the JVM alive on its own.
 */
final class WorkerThreads implements AutoCloseable {
    private final ExecutorService handlers;
    private final ScheduledThreadPoolExecutor timers;

    WorkerThreads(int maxConcurrency) {
        handlers = Executors.newFixedThreadPool(maxConcurrency, daemon("trio-pipe-handler"));
        timers = new ScheduledThreadPoolExecutor(1, daemon("trio-pipe-timer"));
        timers.setRemoveOnCancelPolicy(true);
    }

    ExecutorService handlers() {
        return handlers;
    }

    ScheduledExecutorService timers() {
        return timers;
    }

    /** Interrupts every handler still running and stops the timers. */
    @Override
    public void close() {
        handlers.shutdownNow();
        timers.shutdownNow();
    }

    static ThreadFactory daemon(String name) {
        AtomicInteger count = new AtomicInteger();
        return runnable -> {
            Thread thread = new Thread(runnable, name + "-" + count.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        };
    }
}
