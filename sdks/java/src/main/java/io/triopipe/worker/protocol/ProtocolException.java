package io.triopipe.worker.protocol;

/**
 * A frame that is not a well-formed protocol message. The message says what is wrong
 * and, for a bad field, ends with the path of the value
 * ({@code invalid Kill: not a UUID: 'x' @ $.taskId}).
 */
public final class ProtocolException extends Exception {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception.
     *
     * @param message what is wrong with the frame
     */
    public ProtocolException(String message) {
        super(message);
    }
}
