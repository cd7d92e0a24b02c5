package io.triopipe.worker;

import java.io.IOException;

/**
 * A worker that may not reconnect could not connect or register, or lost its
 * connection; or the dispatcher refused it ({@link HandshakeRefusedException}, {@link
 * RegistrationRefusedException}), which ends the worker whether it may reconnect or
 * not. The message says why.
 */
public sealed class WorkerConnectionException extends IOException
        permits HandshakeRefusedException, RegistrationRefusedException {
    private static final long serialVersionUID = 1L;

    WorkerConnectionException(String message) {
        super(message);
    }
}
