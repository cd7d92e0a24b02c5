package triopipe

import (
	"testing"
	"time"
)

func TestBackoffDoublesUpToItsMaximum(t *testing.T) {
	c := &config{Options: Options{BackoffInitial: 100 * time.Millisecond, BackoffMax: time.Second}}
	caps := map[int]time.Duration{
		0: 100 * time.Millisecond, 1: 200 * time.Millisecond, 2: 400 * time.Millisecond,
		3: 800 * time.Millisecond, 4: time.Second, 1000: time.Second,
	}
	for failures, limit := range caps {
		for range 100 {
			if delay := c.backoff(failures); delay < 0 || delay > limit {
				t.Fatalf("delay %v after %d failures, want it in [0, %v]", delay, failures, limit)
			}
		}
	}
}
