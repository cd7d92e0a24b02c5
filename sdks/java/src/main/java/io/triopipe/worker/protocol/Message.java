package io.triopipe.worker.protocol;

/**
 * One protocol message. Five go from the dispatcher to a worker ({@link TaskDispatch},
 * {@link Kill}, {@link Shutdown}, {@link WorkerRegistered}, {@link HeartbeatAck}) and
 * four from a worker to the dispatcher ({@link WorkerRegister}, {@link Heartbeat},
 * {@link TaskResultMessage}, {@link Backpressure}).
 */
public sealed interface Message
        permits TaskDispatch,
                Kill,
                Shutdown,
                WorkerRegistered,
                HeartbeatAck,
                WorkerRegister,
                Heartbeat,
                TaskResultMessage,
                Backpressure {

    /**
     * The message's {@code "type"} tag, as written on the wire.
     *
     * @return the tag, e.g. {@code "TaskDispatch"}
     */
    String type();
}
