package io.triopipe.worker.protocol;

import java.util.Map;

/** Where a task stands; the last four are terminal. */
public enum TaskStatus {
    /** Queued in the dispatcher. */
    PENDING("Pending", false),
    /** Sent to a worker. */
    DISPATCHED("Dispatched", false),
    /** Reported started by its worker (a progress report). */
    RUNNING("Running", false),
    /** The handler returned; the result's payload holds its value. */
    COMPLETED("Completed", true),
    /** The handler, the worker or the transport failed. */
    FAILED("Failed", true),
    /** The task ran out of time. */
    TIMED_OUT("TimedOut", true),
    /** The task was stopped on purpose (Kill, a cancelled caller, shutdown). */
    CANCELLED("Cancelled", true);

    private static final Map<String, TaskStatus> SPELLINGS =
            WireEnums.spellings(values(), TaskStatus::wireName);

    private final String wireName;
    private final boolean terminal;

    TaskStatus(String wireName, boolean terminal) {
        this.wireName = wireName;
        this.terminal = terminal;
    }

    /**
     * The name written on the wire.
     *
     * @return the PascalCase name, e.g. {@code "TimedOut"}
     */
    public String wireName() {
        return wireName;
    }

    /**
     * Whether this status ends the task.
     *
     * @return true for Completed, Failed, TimedOut and Cancelled
     */
    public boolean isTerminal() {
        return terminal;
    }

    /**
     * The status a wire name stands for, in any ASCII case and, for a name of several words,
     * in snake_case too ({@code "timed_out"}, {@code "TIMEDOUT"} and {@code "TimedOut"} are the
     * same; {@code "timed-out"} and {@code "Time_dOut"} are no status).
     *
     * @param name a name as received
     * @return the status
     * @throws IllegalArgumentException if no status has that name
     */
    public static TaskStatus fromWire(String name) {
        return WireEnums.lookup(SPELLINGS, name, "task status");
    }
}
