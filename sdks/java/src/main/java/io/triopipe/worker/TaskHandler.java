package io.triopipe.worker;

/**
 * Runs one task type: takes the task's payload bound to {@code I}, returns the result.
 *
 * <p>The handler runs on its own thread. {@code Kill}, the task's deadline, a
 * non-graceful shutdown and the end of a drain interrupt that thread: blocking calls throw {@link
 * InterruptedException} (let it propagate), and a loop that computes should check
 * {@link TaskContext#isCancelled()}. Whatever the handler then returns or throws, the
 * task is reported cancelled or timed out.
 *
 * @param <I> the payload type, bound from JSON with Jackson
 * @param <O> the result type, written as JSON with Jackson
 */
@FunctionalInterface
public interface TaskHandler<I, O> {
    /**
     * Runs the task.
     *
     * @param context the task, its deadline and its cancellation state
     * @param payload the task's payload, bound to {@code I}: as received for {@code
     *     JsonNode}, with Jackson otherwise ({@code null} for a JSON {@code null})
     * @return the result, written as the task's result payload
     * @throws Exception to fail the task: a {@link TaskFailure} with its own code, any
     *     other exception with {@link ErrorCodes#HANDLER_ERROR}
     */
    O handle(TaskContext context, I payload) throws Exception;
}
