package io.triopipe.worker;

import java.io.IOException;

/**
 * A worker that may not reconnect could not connect or register, or lost its
 * connection. The message says why.
 */
public final class WorkerConnectionException extends IOException {
    private static final long serialVersionUID = 1L;

    WorkerConnectionException(String message) {
        super(message);
    }
}
