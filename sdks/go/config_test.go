package triopipe

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDrainTimeoutComesFromTheOptionThenTheEnvironment(t *testing.T) {
	echo := func(_ context.Context, payload json.RawMessage) (json.RawMessage, error) { return payload, nil }
	drainTimeout := func(option time.Duration) (time.Duration, error) {
		w := NewWorker(Options{DrainTimeout: option})
		w.Handle("echo", echo)
		c, err := w.config(0)
		if err != nil {
			return 0, err
		}
		return c.DrainTimeout, nil
	}
	for _, c := range []struct {
		env    string // "" is as good as unset
		option time.Duration
		want   time.Duration
	}{
		{"", 0, 30 * time.Second},
		{"250", 0, 250 * time.Millisecond},
		{"0", 0, 0},
		{"250", 2 * time.Second, 2 * time.Second},
	} {
		t.Setenv(drainTimeoutVariable, c.env)
		if got, err := drainTimeout(c.option); err != nil || got != c.want {
			t.Errorf("%s=%q, DrainTimeout %v: got %v (%v), want %v", drainTimeoutVariable, c.env, c.option, got, err, c.want)
		}
	}
	for _, bad := range []string{"abc", "-1", "1.5", "9223372036854775807"} {
		t.Setenv(drainTimeoutVariable, bad)
		if _, err := drainTimeout(0); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), drainTimeoutVariable) {
			t.Errorf("%s=%q: got %v, want an ErrInvalidOptions naming the variable", drainTimeoutVariable, bad, err)
		}
	}
}
