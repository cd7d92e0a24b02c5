package io.triopipe.worker.protocol;

/**
 * Dispatcher to worker: stop taking work and exit.
 *
 * @param graceful true: finish the tasks in flight, report them, then exit; false:
 *     stop them now, report them cancelled, then exit
 */
public record Shutdown(boolean graceful) implements Message {
    @Override
    public String type() {
        return "Shutdown";
    }
}
