package io.triopipe.worker;

/**
 * One connection to the dispatcher. It hands every received frame to its {@link
 * Session} ({@code onFrame}, in order, from one thread at a time) and reports the end
 * of input that leaves output usable ({@code onInputClosed}: stdin) and the end of the
 * connection ({@code onBroken}: a failure, or the dispatcher's WebSocket Close).
 */
interface Transport {
    /** The longest frame read (the dispatcher's own limit, 16 MiB); longer ones are dropped. */
    int MAX_FRAME_SIZE = 16 * 1024 * 1024;

    /** Starts delivering received frames to {@code session}. */
    void start(Session session);

    /**
     * Queues one frame for sending and returns at once. Frames go out in the order of
     * the calls, one at a time; a failed write (over WebSocket, also one that does not
     * complete within the timeout) is reported to the session as broken, and nothing is
     * sent after it.
     */
    void send(String frame);

    /** Sends what is queued and closes the connection normally, within the timeout. */
    void close() throws InterruptedException;

    /**
     * Closes the connection at once, dropping what is queued, and ends a {@link #close}
     * in progress as far as it can (a stdio write that blocks cannot be cut short).
     * Idempotent.
     */
    void abort();
}
