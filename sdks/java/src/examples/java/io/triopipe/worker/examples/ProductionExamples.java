package io.triopipe.worker.examples;

import io.triopipe.worker.Worker;
import java.time.Duration;
import java.util.Map;

/** Workers in production as the SDK's README shows them: long tasks, per-type limits, drain. */
public final class ProductionExamples {
    private ProductionExamples() {}

    record Scene(String name, int frames) {}

    record Rendered(int frames) {}

    record Url(String url) {}

    static void renderFrame(Scene scene, int frame) throws InterruptedException {
        Thread.sleep(10); // stands for real work
    }

    static Worker renderer() {
        return Worker.builder()
                .maxConcurrency(52)
                .maxConcurrencyByType(Map.of("render", 2)) // at most 2 renders among the 52 tasks
                .handle("render", Scene.class, (ctx, in) -> {
                    for (int frame = 0; frame < in.frames(); frame++) {
                        renderFrame(in, frame);
                        ctx.progress((frame + 1) / (double) in.frames(), "frame " + (frame + 1));
                        ctx.extendDeadline(Duration.ofMinutes(1)); // still alive: one more minute from now
                    }
                    return new Rendered(in.frames());
                })
                .handle("fetch", Url.class, (ctx, in) -> in.url())
                .build();
    }

    static Worker.Builder ownSignals() {
        return Worker.builder().handleSignals(false); // the application handles SIGTERM itself
    }

    /** The application's own stop path, with the worker served on the thread {@code serving}. */
    static void stop(Worker worker, Thread serving) throws InterruptedException {
        worker.drain(Duration.ofSeconds(10)); // returns at once
        serving.join(); // runWebSocket returns once the worker has drained
    }
}
