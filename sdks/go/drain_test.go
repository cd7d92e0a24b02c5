package triopipe_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/coder/websocket"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// The drain through the library API (Worker.Drain); signals_test.go drives it
// through real signals to a real process.

// expectDraining expects the worker's next message, heartbeats aside, to be the
// draining Backpressure.
func expectDraining(t *testing.T, p *peer, load float64) {
	t.Helper()
	next := p.next()
	for _, ok := next.(protocol.Heartbeat); ok; _, ok = next.(protocol.Heartbeat) {
		next = p.next()
	}
	m, ok := next.(protocol.Backpressure)
	want := protocol.BackpressureSignal{WorkerID: m.Signal.WorkerID, CurrentLoad: load, ShouldThrottle: true, Draining: true}
	if !ok || m.Signal != want {
		t.Fatalf("got %#v, want the draining Backpressure %+v", m, want)
	}
}

// stubborn is a handler that outlives its context: it records the cause when its
// context is done, and returns only at the end of the test.
type stubborn struct {
	started chan struct{}
	causes  chan error
	release chan struct{}
}

func newStubborn(t *testing.T) *stubborn {
	s := &stubborn{started: make(chan struct{}, 10), causes: make(chan error, 10), release: make(chan struct{})}
	t.Cleanup(func() { close(s.release) })
	return s
}

func (s *stubborn) handle(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
	s.started <- struct{}{}
	select {
	case <-ctx.Done():
		s.causes <- context.Cause(ctx)
	case <-s.release:
		return nil, nil
	}
	<-s.release
	return nil, nil
}

// logRecorder is a slog handler that passes on the message of every record.
type logRecorder struct{ messages chan string }

func newLogRecorder() (*slog.Logger, *logRecorder) {
	r := &logRecorder{messages: make(chan string, 1000)}
	return slog.New(r), r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, record slog.Record) error {
	r.messages <- record.Message
	return nil
}

// waitFor returns once message has been logged.
func (r *logRecorder) waitFor(t *testing.T, message string) {
	t.Helper()
	for {
		select {
		case logged := <-r.messages:
			if logged == message {
				return
			}
		case <-time.After(patience):
			t.Fatalf("the worker did not log %q", message)
		}
	}
}

func TestDrainLetsTasksInFlightFinish(t *testing.T) {
	w, g := newWorker(triopipe.Options{MaxConcurrency: 2})
	s := startStdio(t, context.Background(), w)
	first := s.dispatch("gate", `1`, 60_000)
	second := s.dispatch("gate", `2`, 60_000)
	g.waitStarted(t, 2)
	if full := nextOf[protocol.Backpressure](s.peer).Signal; !full.ShouldThrottle || full.Draining {
		t.Errorf("when full: %+v", full)
	}
	w.Drain(patience)
	expectDraining(t, s.peer, 1)
	late := s.dispatch("echo", `"crossed the drain"`, 5000)
	expectError(t, s.result(late), protocol.StatusFailed, protocol.CodeWorkerShuttingDown, true)
	_ = s.stdin.Close() // input ending during a drain does not stop it
	close(g.release)
	finished := map[protocol.UUID]bool{}
	for range 2 { // and no Backpressure lifting the throttle in between
		m, ok := s.next().(protocol.TaskResultMessage)
		if !ok || m.Result.Status != protocol.StatusCompleted {
			t.Errorf("got %#v, want the in-flight task's result", m)
		}
		finished[m.Result.TaskID] = true
	}
	if !finished[first] || !finished[second] {
		t.Errorf("finished %v, want %s and %s", finished, first, second)
	}
	if err := s.wait(); err != nil {
		t.Errorf("RunStdio returned %v after a drain", err)
	}
}

func TestDrainCancelsWhatOutlivesItsGrace(t *testing.T) {
	w, g := newWorker(triopipe.Options{})
	ignoring := newStubborn(t)
	w.Handle("stubborn", ignoring.handle)
	s := startStdio(t, context.Background(), w)
	honouring := s.dispatch("gate", `null`, 60_000)
	ignoringID := s.dispatch("stubborn", `null`, 60_000)
	g.waitStarted(t, 1)
	<-ignoring.started
	w.Drain(time.Hour)
	expectDraining(t, s.peer, 0.2)
	w.Drain(0) // a sooner deadline is taken: the tasks are cancelled now
	for range 2 {
		r := nextOf[protocol.TaskResultMessage](s.peer).Result
		expectError(t, r, protocol.StatusCancelled, protocol.CodeWorkerShuttingDown, true)
		if r.TaskID != honouring && r.TaskID != ignoringID {
			t.Errorf("a result for %s", r.TaskID)
		}
	}
	if cause := g.cause(t); !errors.Is(cause, triopipe.ErrShutdown) {
		t.Errorf("cause %v, want ErrShutdown", cause)
	}
	// The handler that ignores its context is still running: RunStdio does not wait.
	if err := s.wait(); err != nil {
		t.Errorf("RunStdio returned %v after a drain", err)
	}
}

func TestARunAfterADrainReturnsAtOnce(t *testing.T) {
	w, _ := newWorker(triopipe.Options{})
	w.Drain(time.Hour)
	s := startStdio(t, context.Background(), w)
	expectDraining(t, s.peer, 0)
	if err := s.wait(); err != nil {
		t.Errorf("RunStdio returned %v", err)
	}

	d := newWSDispatcher(t)
	w, _ = newWorker(triopipe.Options{ConnectTimeout: time.Hour})
	w.Drain(time.Hour)
	if err := waitEnded(t, runWS(t, w, d.url)); err != nil {
		t.Errorf("RunWebSocket returned %v", err)
	}
	select {
	case <-d.conns:
		t.Error("RunWebSocket connected after the drain")
	default:
	}
}

func TestDrainOverWebSocketClosesNormallyAndDoesNotReconnect(t *testing.T) {
	d := newWSDispatcher(t)
	w, g := newWorker(triopipe.Options{BackoffInitial: time.Millisecond})
	ended := runWS(t, w, d.url)
	p := d.accept()
	p.register()
	id := p.dispatch("gate", `"finish me"`, 60_000)
	g.waitStarted(t, 1)
	w.Drain(patience)
	expectDraining(t, p.peer, 0.1)
	close(g.release)
	if r := p.result(id); r.Status != protocol.StatusCompleted {
		t.Errorf("in-flight task: %+v", r)
	}
	if code := p.waitClosed(); code != websocket.StatusNormalClosure {
		t.Errorf("closed with %v, want 1000", code)
	}
	if err := waitEnded(t, ended); err != nil {
		t.Errorf("RunWebSocket returned %v after a drain", err)
	}
}

func TestAConnectionLostDuringADrainIsNotReopened(t *testing.T) {
	d := newWSDispatcher(t)
	w, g := newWorker(triopipe.Options{BackoffInitial: time.Millisecond})
	ended := runWS(t, w, d.url)
	p := d.accept()
	p.register()
	p.dispatch("gate", `null`, 60_000)
	g.waitStarted(t, 1)
	w.Drain(patience)
	expectDraining(t, p.peer, 0.1)
	_ = p.conn.Close(websocket.StatusServiceRestart, "")
	if cause := g.cause(t); !errors.Is(cause, triopipe.ErrConnectionLost) {
		t.Errorf("cause %v, want ErrConnectionLost", cause)
	}
	if err := waitEnded(t, ended); err != nil {
		t.Errorf("RunWebSocket returned %v", err)
	}
}

func TestADrainEndsTheWaitForAHandlerThatIgnoresItsContext(t *testing.T) {
	d := newWSDispatcher(t)
	w, _ := newWorker(triopipe.Options{BackoffInitial: time.Millisecond})
	ignoring := newStubborn(t)
	w.Handle("stubborn", ignoring.handle)
	ended := runWS(t, w, d.url)
	p := d.accept()
	p.register()
	p.dispatch("stubborn", `null`, 60_000)
	<-ignoring.started
	// The connection is lost: the worker waits for its handlers before it
	// reconnects, and this one does not return...
	_ = p.conn.Close(websocket.StatusServiceRestart, "")
	if cause := <-ignoring.causes; !errors.Is(cause, triopipe.ErrConnectionLost) {
		t.Errorf("cause %v, want ErrConnectionLost", cause)
	}
	w.Drain(0) // ...until a drain gives up on it
	if err := waitEnded(t, ended); err != nil {
		t.Errorf("RunWebSocket returned %v", err)
	}
}

func TestADrainEndsTheWaitForRegistration(t *testing.T) {
	d := newWSDispatcher(t)
	w, _ := newWorker(triopipe.Options{})
	ended := runWS(t, w, d.url)
	p := d.accept()
	nextOf[protocol.WorkerRegister](p.peer) // and never answer it
	w.Drain(time.Hour)
	p.waitClosed()
	if err := waitEnded(t, ended); err != nil {
		t.Errorf("RunWebSocket returned %v", err)
	}
}

func TestADrainEndsTheWaitToReconnect(t *testing.T) {
	d := newWSDispatcher(t)
	logger, log := newLogRecorder()
	w, _ := newWorker(triopipe.Options{BackoffInitial: time.Hour, BackoffMax: time.Hour, Logger: logger})
	ended := runWS(t, w, d.url)
	p := d.accept()
	p.register()
	_ = p.conn.Close(websocket.StatusServiceRestart, "")
	log.waitFor(t, "reconnecting") // up to an hour from now
	w.Drain(time.Hour)
	if err := waitEnded(t, ended); err != nil {
		t.Errorf("RunWebSocket returned %v", err)
	}
}
