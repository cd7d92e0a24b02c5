package io.triopipe.worker;

/**
 * The dispatcher closed the connection with code 1008 (policy violation) before it
 * accepted the registration: a task type or tag outside the token's scope, a worker id
 * that a live connection holds. {@link Worker#runWebSocket} throws it at once, without
 * reconnecting. A 1008 later in a session is a lost connection, as any other.
 */
public final class RegistrationRefusedException extends WorkerConnectionException {
    private static final long serialVersionUID = 1L;

    private final String reason;

    RegistrationRefusedException(String reason) {
        super("the dispatcher refused the registration: " + reason);
        this.reason = reason;
    }

    /**
     * The close reason.
     *
     * @return why the registration was refused
     */
    public String reason() {
        return reason;
    }
}
