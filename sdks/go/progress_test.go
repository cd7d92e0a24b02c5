package triopipe_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// running expects the next TaskResult to be a Running report for task id.
func running(t *testing.T, p *peer, id protocol.UUID) protocol.TaskResult {
	t.Helper()
	r := p.result(id)
	if r.Status != protocol.StatusRunning || r.Payload != nil && string(r.Payload) != "null" || r.Error != nil {
		t.Fatalf("got %+v, want a Running report", r)
	}
	return r
}

func TestProgressReportsArriveInOrder(t *testing.T) {
	w, _ := newWorker(triopipe.Options{WorkerID: "reporter"})
	w.Handle("stages", func(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
		for _, report := range []struct {
			fraction float64
			message  string
		}{{0, "stage 1"}, {0.4, "stage 2"}, {1, ""}, {triopipe.UnknownFraction, "tidying up"}} {
			if err := triopipe.Progress(ctx, report.fraction, report.message); err != nil {
				return nil, err
			}
		}
		return json.RawMessage(`"done"`), nil
	})
	s := startStdio(t, context.Background(), w)
	id := s.dispatch("stages", `null`, 5000)
	type report struct {
		fraction *float64
		message  *string
	}
	for i, want := range []report{
		{ptr(0.0), ptr("stage 1")}, {ptr(0.4), ptr("stage 2")}, {ptr(1.0), nil}, {nil, ptr("tidying up")},
	} {
		r := running(t, s.peer, id)
		if r.Progress == nil || !equalPtr(r.Progress.Fraction, want.fraction) || !equalPtr(r.Progress.Message, want.message) ||
			r.ExtendMs != 0 || r.WorkerID != "reporter" || r.DurationMs < 0 {
			t.Errorf("report %d: %+v, progress %s, want %s", i, r, show(r.Progress), show(&protocol.Progress{Fraction: want.fraction, Message: want.message}))
		}
	}
	// Terminal: no progress member (the peer also checks every frame is canonical).
	if r := s.result(id); r.Status != protocol.StatusCompleted || r.Progress != nil || string(r.Payload) != `"done"` {
		t.Errorf("result %+v", r)
	}
}

func ptr[T any](v T) *T { return &v }

func equalPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func show(p *protocol.Progress) string {
	if p == nil {
		return "none"
	}
	text, _ := json.Marshal(map[string]any{"fraction": p.Fraction, "message": p.Message})
	return string(text)
}

func TestProgressRefusesWhatItCannotSend(t *testing.T) {
	if err := triopipe.Progress(context.Background(), 0.5, ""); err == nil {
		t.Error("Progress outside a handler returned nil")
	}
	if err := triopipe.ExtendDeadline(context.Background(), time.Second); err == nil {
		t.Error("ExtendDeadline outside a handler returned nil")
	}
	w, _ := newWorker(triopipe.Options{})
	errs := make(chan error, 10)
	w.Handle("misuse", func(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
		for _, fraction := range []float64{-0.5, 1.01, math.NaN(), math.Inf(1)} {
			errs <- triopipe.Progress(ctx, fraction, "")
		}
		errs <- triopipe.ExtendDeadline(ctx, 0)
		errs <- triopipe.ExtendDeadline(ctx, -time.Second)
		<-ctx.Done() // killed: nothing more is reported
		errs <- triopipe.Progress(ctx, 0.5, "too late")
		errs <- triopipe.ExtendDeadline(ctx, time.Second)
		return nil, ctx.Err()
	})
	contexts := make(chan context.Context, 1)
	w.Handle("keep-context", func(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
		contexts <- ctx
		return nil, nil
	})
	s := startStdio(t, context.Background(), w)
	id := s.dispatch("misuse", `null`, 60_000)
	for range 6 {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "triopipe:") {
			t.Errorf("got %v, want an error for a bad argument", err)
		}
	}
	s.send(protocol.Kill{TaskID: id, Reason: "enough"})
	for range 2 {
		if err := <-errs; !errors.Is(err, triopipe.ErrKilled) {
			t.Errorf("after Kill: %v, want ErrKilled", err)
		}
	}
	// The Cancelled result comes next: no Running report was sent for the bad
	// calls, nor after the Kill.
	expectError(t, s.result(id), protocol.StatusCancelled, protocol.CodeKilled, false)

	// After its result, a task's context reports nothing either.
	kept := s.dispatch("keep-context", `null`, 5000)
	if r := s.result(kept); r.Status != protocol.StatusCompleted {
		t.Fatalf("%+v", r)
	}
	if err := triopipe.Progress(<-contexts, 1, "after the end"); err == nil {
		t.Error("Progress after the task's result returned nil")
	}
	if r := s.result(s.dispatch("echo", `1`, 5000)); r.Status != protocol.StatusCompleted {
		t.Errorf("the next message after them: %+v", r)
	}
}

func TestExtendDeadlineMovesTheLocalClock(t *testing.T) {
	const timeout, extension = 250 * time.Millisecond, 750 * time.Millisecond
	w, _ := newWorker(triopipe.Options{})
	deadlines := make(chan [2]time.Time, 1)
	causes := make(chan error, 1)
	w.Handle("long", func(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
		before, _ := ctx.Deadline()
		if err := triopipe.ExtendDeadline(ctx, extension); err != nil {
			return nil, err
		}
		after, _ := ctx.Deadline()
		deadlines <- [2]time.Time{before, after}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	s := startStdio(t, context.Background(), w)
	sent := time.Now()
	id := s.dispatch("long", `null`, timeout.Milliseconds())
	if r := running(t, s.peer, id); r.ExtendMs != extension.Milliseconds() || r.Progress != nil {
		t.Errorf("report %+v, want extendMs %d and no progress", r, extension.Milliseconds())
	}
	d := <-deadlines
	if d[0].Sub(sent) < timeout || d[1].Sub(sent) < extension || !d[1].After(d[0]) {
		t.Errorf("ctx.Deadline() %v after the dispatch before the extension and %v after it", d[0].Sub(sent), d[1].Sub(sent))
	}
	r := s.result(id)
	expectError(t, r, protocol.StatusTimedOut, protocol.CodeTimeout, true)
	if cause := <-causes; !errors.Is(cause, triopipe.ErrTaskTimeout) {
		t.Errorf("cause %v, want ErrTaskTimeout", cause)
	}
	// Without the extension it would have timed out after 250 ms.
	if elapsed := time.Since(sent); elapsed < extension || r.DurationMs < extension.Milliseconds() {
		t.Errorf("timed out after %v (durationMs %d), before the extension of %v ran out", elapsed, r.DurationMs, extension)
	}
}

func TestExtendDeadlineRoundsUpToAMillisecond(t *testing.T) {
	w, _ := newWorker(triopipe.Options{})
	w.Handle("nudge", func(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
		return nil, triopipe.ExtendDeadline(ctx, 1500*time.Microsecond)
	})
	s := startStdio(t, context.Background(), w)
	id := s.dispatch("nudge", `null`, 60_000)
	if r := running(t, s.peer, id); r.ExtendMs != 2 {
		t.Errorf("extendMs %d, want 2", r.ExtendMs)
	}
	if r := s.result(id); r.Status != protocol.StatusCompleted {
		t.Errorf("%+v", r)
	}
}
