package io.triopipe.worker;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Reconnection delays with full jitter: uniform in {@code [0, cap]}, the cap starting at
 * {@code initial} and doubling per failed attempt up to {@code max}.
 */
final class Backoff {
    private final Duration initial;
    private final Duration max;
    private int attempt;

    Backoff(Duration initial, Duration max) {
        this.initial = initial;
        this.max = max;
    }

    Duration next() {
        long limit = max.toNanos();
        long cap = initial.toNanos();
        for (int i = 0; i < attempt && cap < limit; i++) {
            cap = cap > limit / 2 ? limit : cap * 2;
        }
        attempt++;
        return Duration.ofNanos(ThreadLocalRandom.current().nextLong(Math.min(cap, limit) + 1));
    }

    void reset() {
        attempt = 0;
    }
}
