package triopipe_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

func TestEchoPreservesPayloads(t *testing.T) {
	w, _ := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	for _, payload := range []string{
		`{"b":[1,2.50,{"c":null}],"a":"héllo 🐍 <&> \u2028"}`,
		`12345678901234567890123`,
		`null`,
		`"` + strings.Repeat("x", 256<<10) + `"`,
	} {
		id := s.dispatch("echo", payload, 5000)
		r := s.result(id)
		if r.Status != protocol.StatusCompleted || r.Error != nil {
			t.Fatalf("echo: %+v", r)
		}
		want, _ := protocol.Canonicalize([]byte(payload))
		if string(r.Payload) != string(want) {
			t.Errorf("echo changed the payload\n got: %.100s\nwant: %.100s", r.Payload, want)
		}
	}
}

func TestFailures(t *testing.T) {
	type in struct{ N int }
	w, _ := newWorker(triopipe.Options{})
	w.Handle("fail", func(context.Context, json.RawMessage) (json.RawMessage, error) {
		return nil, errors.New("disk on fire")
	})
	w.Handle("refuse", func(context.Context, json.RawMessage) (json.RawMessage, error) {
		return nil, &triopipe.TaskFailure{Code: "BAD_INPUT", Message: "no", Retryable: false}
	})
	w.Handle("panic", func(context.Context, json.RawMessage) (json.RawMessage, error) { panic("boom") })
	w.Handle("typed", triopipe.Typed(func(_ context.Context, v in) (in, error) { return v, nil }))
	w.Handle("not-json", func(context.Context, json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage("{oops"), nil
	})
	s := startStdio(t, context.Background(), w)
	for _, c := range []struct {
		taskType, payload, code, message string
		retryable                        bool
	}{
		{"fail", `null`, protocol.CodeHandlerError, "disk on fire", true},
		{"refuse", `null`, "BAD_INPUT", "no", false},
		{"panic", `null`, protocol.CodeHandlerError, "boom", true},
		{"typed", `{"N":"seven"}`, protocol.CodeParseError, "payload does not match", false},
		{"not-json", `null`, protocol.CodeParseError, "not JSON", false},
		{"no-such-type", `null`, protocol.CodeUnknownTaskType, `"no-such-type"`, false},
	} {
		r := s.result(s.dispatch(c.taskType, c.payload, 5000))
		expectError(t, r, protocol.StatusFailed, c.code, c.retryable)
		if !strings.Contains(r.Error.Message, c.message) || string(r.Payload) != "null" {
			t.Errorf("%s: message %q (want it to contain %q), payload %s", c.taskType, r.Error.Message, c.message, r.Payload)
		}
	}
	r := s.result(s.dispatch("typed", `{"N":7}`, 5000))
	if r.Status != protocol.StatusCompleted || string(r.Payload) != `{"N":7}` {
		t.Errorf("typed: %+v", r)
	}
}

func TestHandlerSeesItsTask(t *testing.T) {
	w, _ := newWorker(triopipe.Options{})
	seen := make(chan protocol.Task, 1)
	w.Handle("inspect", func(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
		task, _ := triopipe.TaskFromContext(ctx)
		seen <- task
		return nil, nil
	})
	s := startStdio(t, context.Background(), w)
	id := s.dispatch("inspect", `[1]`, 1234)
	if r := s.result(id); r.Status != protocol.StatusCompleted || string(r.Payload) != "null" {
		t.Fatalf("%+v", r)
	}
	task := <-seen
	m := task.Metadata
	if task.ID != id || m.TimeoutMs != 1234 || string(task.Payload) != "[1]" ||
		m.TraceID != nil || m.IdempotencyKey != nil || m.Attempt != nil || m.Epoch != nil {
		t.Errorf("TaskFromContext gave %+v", task)
	}
	// The extensions, as trio_pipe's dispatcher sends them.
	s.sendRaw(`{"type":"TaskDispatch","task":{"id":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f","taskType":"inspect","payload":null,` +
		`"metadata":{"retryCount":2,"traceId":"t-1","idempotencyKey":"order-42","attempt":3,"epoch":0}}}`)
	if r := nextOf[protocol.TaskResultMessage](s.peer).Result; r.Status != protocol.StatusCompleted {
		t.Fatalf("%+v", r)
	}
	m = (<-seen).Metadata
	if m.RetryCount != 2 || m.TraceID == nil || *m.TraceID != "t-1" || m.IdempotencyKey == nil || *m.IdempotencyKey != "order-42" ||
		m.Attempt == nil || *m.Attempt != 3 || m.Epoch == nil || *m.Epoch != 0 {
		t.Errorf("TaskFromContext gave the metadata %+v", m)
	}
	if _, ok := triopipe.TaskFromContext(context.Background()); ok {
		t.Error("TaskFromContext found a task outside a handler")
	}
}

func TestConcurrencyLimitAndBackpressure(t *testing.T) {
	w, g := newWorker(triopipe.Options{MaxConcurrency: 2})
	s := startStdio(t, context.Background(), w)
	first := s.dispatch("gate", `1`, 5000)
	second := s.dispatch("gate", `2`, 5000)
	g.waitStarted(t, 2)
	throttle := nextOf[protocol.Backpressure](s.peer).Signal
	if !throttle.ShouldThrottle || throttle.CurrentLoad != 1.0 {
		t.Errorf("when full: %+v", throttle)
	}
	third := s.dispatch("gate", `3`, 5000)
	expectError(t, s.result(third), protocol.StatusFailed, protocol.CodeWorkerSaturated, true)

	g.release <- struct{}{} // one of the two handlers returns
	done := nextOf[protocol.TaskResultMessage](s.peer).Result
	if done.Status != protocol.StatusCompleted || done.TaskID != first && done.TaskID != second {
		t.Fatalf("result after the release: %+v", done)
	}
	if release, ok := s.next().(protocol.Backpressure); !ok || release.Signal.ShouldThrottle || release.Signal.CurrentLoad != 0.5 {
		t.Errorf("after a slot freed: %+v, want Backpressure with shouldThrottle false and load 0.5", release)
	}
	close(g.release)
	if r := nextOf[protocol.TaskResultMessage](s.peer).Result; r.Status != protocol.StatusCompleted || r.TaskID == done.TaskID {
		t.Errorf("the other task: %+v", r)
	}
}

func TestKill(t *testing.T) {
	w, g := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	id := s.dispatch("gate", `null`, 60_000)
	g.waitStarted(t, 1)
	s.send(protocol.Kill{TaskID: id, Reason: "the caller was cancelled"})
	if cause := g.cause(t); !errors.Is(cause, triopipe.ErrKilled) {
		t.Errorf("cause %v, want ErrKilled", cause)
	}
	r := s.result(id)
	expectError(t, r, protocol.StatusCancelled, protocol.CodeKilled, false)
	if r.Error.Message != "the caller was cancelled" {
		t.Errorf("message %q", r.Error.Message)
	}
	s.send(protocol.Kill{TaskID: id}) // finished: ignored
	if r := s.result(s.dispatch("echo", `1`, 5000)); r.Status != protocol.StatusCompleted {
		t.Errorf("echo after Kill: %+v", r)
	}
}

func TestTimeout(t *testing.T) {
	w, g := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	sent := time.Now()
	id := s.dispatch("gate", `null`, 50)
	if cause := g.cause(t); !errors.Is(cause, triopipe.ErrTaskTimeout) {
		t.Errorf("cause %v, want ErrTaskTimeout", cause)
	}
	r := s.result(id)
	expectError(t, r, protocol.StatusTimedOut, protocol.CodeTimeout, true)
	if elapsed := time.Since(sent); elapsed < 50*time.Millisecond || r.DurationMs < 50 {
		t.Errorf("timed out after %v (durationMs %d), before its 50 ms", elapsed, r.DurationMs)
	}
}

func TestGracefulShutdown(t *testing.T) {
	w, g := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	id := s.dispatch("gate", `"in flight"`, 60_000)
	g.waitStarted(t, 1)
	s.send(protocol.Shutdown{Graceful: true})
	late := s.dispatch("echo", `1`, 5000)
	expectError(t, s.result(late), protocol.StatusFailed, protocol.CodeWorkerShuttingDown, true)
	_ = s.stdin.Close() // input ending after Shutdown does not stop the drain
	close(g.release)
	if r := s.result(id); r.Status != protocol.StatusCompleted || string(r.Payload) != `"in flight"` {
		t.Errorf("in-flight task: %+v", r)
	}
	if err := s.wait(); err != nil {
		t.Errorf("RunStdio returned %v after Shutdown", err)
	}
}

func TestShutdownNotGraceful(t *testing.T) {
	w, g := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	id := s.dispatch("gate", `null`, 60_000)
	g.waitStarted(t, 1)
	s.send(protocol.Shutdown{Graceful: false})
	if cause := g.cause(t); !errors.Is(cause, triopipe.ErrShutdown) {
		t.Errorf("cause %v, want ErrShutdown", cause)
	}
	expectError(t, s.result(id), protocol.StatusCancelled, protocol.CodeWorkerShuttingDown, true)
	if err := s.wait(); err != nil {
		t.Errorf("RunStdio returned %v after Shutdown", err)
	}
}

func TestMalformedInputIsSkipped(t *testing.T) {
	w, _ := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	for _, line := range []string{
		"", "not json", "[1,2]", `{"no":"type"}`, `{"type":"Hello"}`,
		`{"type":"TaskDispatch","task":{"taskType":"echo"}}`,
		`{"type":"TaskDispatch","task":{"id":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f","taskType":"echo","metadata":{"attempt":0}}}`,
		`{"type":"Kill","taskId":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f"}`,
		`{"type":"Heartbeat","payload":{"workerId":"w"}}`,
		strings.Repeat("x", protocol.MaxFrameSize+10),
	} {
		s.sendRaw(line)
	}
	if r := s.result(s.dispatch("echo", `"still here"`, 5000)); r.Status != protocol.StatusCompleted {
		t.Errorf("echo after malformed input: %+v", r)
	}
}

func TestLenientInput(t *testing.T) {
	w, _ := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	s.sendRaw(`{"type":"taskdispatch","extra":1,"task":{"id":"{3B0F6C1E-5D2A-4E8B-9C47-1A2B3C4D5E6F}","taskType":"echo","payload":{"k":[true]},"metadata":{"priority":"high"}}}`)
	r := nextOf[protocol.TaskResultMessage](s.peer).Result
	if r.TaskID.String() != "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f" || r.Status != protocol.StatusCompleted || string(r.Payload) != `{"k":[true]}` {
		t.Errorf("%+v", r)
	}
}

func TestEndOfInputCancelsHandlers(t *testing.T) {
	w, g := newWorker(triopipe.Options{})
	s := startStdio(t, context.Background(), w)
	s.dispatch("gate", `null`, 60_000)
	g.waitStarted(t, 1)
	_ = s.stdin.Close()
	if cause := g.cause(t); !errors.Is(cause, triopipe.ErrConnectionLost) {
		t.Errorf("cause %v, want ErrConnectionLost", cause)
	}
	if err := s.wait(); err != nil {
		t.Errorf("RunStdio returned %v at the end of stdin", err)
	}
}

func TestCancellingTheContextStopsTheWorker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, g := newWorker(triopipe.Options{})
	s := startStdio(t, ctx, w)
	s.dispatch("gate", `null`, 60_000)
	g.waitStarted(t, 1)
	cancel()
	if cause := g.cause(t); !errors.Is(cause, context.Canceled) {
		t.Errorf("cause %v, want context.Canceled", cause)
	}
	if err := s.wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("RunStdio returned %v, want context.Canceled", err)
	}
}

func TestStdioHeartbeats(t *testing.T) {
	w, g := newWorker(triopipe.Options{WorkerID: "beating", MaxConcurrency: 3, HeartbeatInterval: 20 * time.Millisecond})
	s := startStdio(t, context.Background(), w)
	s.dispatch("gate", `null`, 60_000)
	g.waitStarted(t, 1)
	for {
		beat := nextOf[protocol.Heartbeat](s.peer).Payload
		want := protocol.HeartbeatPayload{WorkerID: "beating", ActiveTasks: 1, Capacity: 3, UptimeSeconds: beat.UptimeSeconds}
		if beat.ActiveTasks == 0 {
			continue // sent before the task was counted
		}
		if !reflect.DeepEqual(beat, want) || beat.UptimeSeconds < 0 {
			t.Errorf("heartbeat %+v", beat)
		}
		return
	}
}

func TestPerTypeLimitsHold(t *testing.T) {
	w, g := newWorker(triopipe.Options{MaxConcurrency: 4, MaxConcurrencyByType: map[string]int{"gate": 2}})
	s := startStdio(t, context.Background(), w)
	first := s.dispatch("gate", `1`, 60_000)
	s.dispatch("gate", `2`, 60_000)
	g.waitStarted(t, 2)
	for range 3 { // beyond the type's limit, with free slots in the worker
		r := s.result(s.dispatch("gate", `3`, 60_000))
		expectError(t, r, protocol.StatusFailed, protocol.CodeWorkerSaturated, true)
		if !strings.Contains(r.Error.Message, `type "gate"`) {
			t.Errorf("message %q", r.Error.Message)
		}
	}
	if r := s.result(s.dispatch("echo", `"other types run"`, 5000)); r.Status != protocol.StatusCompleted {
		t.Errorf("echo: %+v", r)
	}
	s.send(protocol.Kill{TaskID: first}) // a slot of the type frees...
	expectError(t, s.result(first), protocol.StatusCancelled, protocol.CodeKilled, false)
	s.dispatch("gate", `4`, 60_000) // ...and is taken again
	g.waitStarted(t, 1)
	expectError(t, s.result(s.dispatch("gate", `5`, 60_000)), protocol.StatusFailed, protocol.CodeWorkerSaturated, true)
	close(g.release)
	for range 2 {
		if r := nextOf[protocol.TaskResultMessage](s.peer).Result; r.Status != protocol.StatusCompleted {
			t.Errorf("%+v", r)
		}
	}
	if peak := g.peak.Load(); peak != 2 {
		t.Errorf("at most %d gate handlers ran at once, want 2", peak)
	}
}
