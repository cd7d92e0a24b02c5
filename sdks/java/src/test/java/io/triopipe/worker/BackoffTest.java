package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import org.junit.jupiter.api.Test;

class BackoffTest {
    @Test
    void delaysStayUnderACapThatDoublesUpToTheMaximum() {
        Backoff backoff = new Backoff(Duration.ofMillis(100), Duration.ofSeconds(1));
        long[] caps = {100, 200, 400, 800, 1000, 1000, 1000};
        for (long cap : caps) {
            Duration delay = backoff.next();
            assertTrue(
                    !delay.isNegative() && delay.toMillis() <= cap, () -> delay + " is not within [0, " + cap + " ms]");
        }
        for (int i = 0; i < 100; i++) {
            assertTrue(backoff.next().compareTo(Duration.ofSeconds(1)) <= 0, "capped after many attempts");
        }
    }

    @Test
    void resetStartsOverFromTheInitialCap() {
        Backoff backoff = new Backoff(Duration.ofMillis(10), Duration.ofHours(1));
        for (int i = 0; i < 20; i++) {
            backoff.next();
        }
        backoff.reset();
        assertTrue(backoff.next().toMillis() <= 10);
    }
}
