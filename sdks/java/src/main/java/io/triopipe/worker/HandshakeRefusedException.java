package io.triopipe.worker;

/**
 * The dispatcher answered the opening handshake with an HTTP error instead of
 * accepting it. For 401 (no token, or one the dispatcher does not accept) and 403 (a
 * valid token that may not connect) {@link Worker#runWebSocket} throws it at once,
 * without reconnecting: the same credential cannot succeed. Any other status (503 when
 * the dispatcher is at its connection limit...) is retried like a failed connection.
 */
public final class HandshakeRefusedException extends WorkerConnectionException {
    private static final long serialVersionUID = 1L;

    /** The reason kept of a refusal's body, at most. */
    private static final int MAX_REASON = 200;

    private final int status;
    private final String reason;

    private HandshakeRefusedException(int status, String reason) {
        super("the dispatcher refused the connection (HTTP " + status + "): " + reason);
        this.status = status;
        this.reason = reason;
    }

    /** The refusal that an answer with {@code status} and {@code body} (may be null) is. */
    static HandshakeRefusedException of(int status, String body) {
        String text = body == null ? "" : body.strip().replaceAll("\\s+", " ");
        if (text.isEmpty()) {
            text = "HTTP status " + status;
        } else if (text.length() > MAX_REASON) {
            text = text.substring(0, MAX_REASON - 3) + "...";
        }
        return new HandshakeRefusedException(status, text);
    }

    /**
     * The HTTP status of the answer.
     *
     * @return 401, 403, or another status
     */
    public int status() {
        return status;
    }

    /**
     * Why, in the dispatcher's words: the answer's body, on one line.
     *
     * @return the reason
     */
    public String reason() {
        return reason;
    }

    /** Whether the refusal ends the worker instead of a reconnection: 401 and 403. */
    boolean isFatal() {
        return status == 401 || status == 403;
    }
}
