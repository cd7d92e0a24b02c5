package triopipe_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// runWS runs w against url in the background; the returned channel gets
// RunWebSocket's return value. The worker is stopped when the test ends.
func runWS(t *testing.T, w *triopipe.Worker, url string) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		ended <- w.RunWebSocket(ctx, url)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(patience): // a handler that ignores its context holds it
			t.Error("RunWebSocket did not return after its context was cancelled")
		}
	})
	return ended
}

func waitEnded(t *testing.T, ended <-chan error) error {
	t.Helper()
	select {
	case err := <-ended:
		return err
	case <-time.After(patience):
		t.Fatal("RunWebSocket did not return")
		return nil
	}
}

func TestRegistrationAndHeartbeats(t *testing.T) {
	d := newWSDispatcher(t)
	w, _ := newWorker(triopipe.Options{WorkerID: "ws-1", MaxConcurrency: 3, Tags: []string{"gpu"}, HeartbeatInterval: 20 * time.Millisecond})
	runWS(t, w, d.url)
	p := d.accept()
	registration := p.register()
	want := protocol.WorkerRegistration{WorkerID: "ws-1", SupportedTasks: []string{"echo", "gate"},
		MaxConcurrency: 3, Language: "Go", Tags: []string{"gpu"}}
	if !reflect.DeepEqual(registration, want) {
		t.Errorf("registration %+v, want %+v", registration, want)
	}
	beat := nextOf[protocol.Heartbeat](p.peer).Payload
	if beat.WorkerID != "ws-1" || beat.Capacity != 3 || beat.ActiveTasks != 0 {
		t.Errorf("heartbeat %+v", beat)
	}
	id := p.dispatch("echo", `{"over":"websocket"}`, 5000)
	if r := p.result(id); r.Status != protocol.StatusCompleted || string(r.Payload) != `{"over":"websocket"}` || r.WorkerID != "ws-1" {
		t.Errorf("%+v", r)
	}
}

func TestRegistrationCarriesThePerTypeLimits(t *testing.T) {
	d := newWSDispatcher(t)
	w, _ := newWorker(triopipe.Options{MaxConcurrency: 5, MaxConcurrencyByType: map[string]int{"gate": 2, "echo": 5}})
	runWS(t, w, d.url)
	registration := d.accept().register()
	if want := map[string]int64{"echo": 5, "gate": 2}; !reflect.DeepEqual(registration.MaxConcurrencyByType, want) {
		t.Errorf("maxConcurrencyByType %v, want %v", registration.MaxConcurrencyByType, want)
	}
}

func TestReconnectsWithTheSameID(t *testing.T) {
	d := newWSDispatcher(t)
	w, g := newWorker(triopipe.Options{BackoffInitial: time.Millisecond})
	runWS(t, w, d.url)
	first := d.accept()
	id := first.register().WorkerID
	first.dispatch("gate", `null`, 60_000)
	g.waitStarted(t, 1)
	_ = first.conn.Close(websocket.StatusServiceRestart, "")
	if cause := g.cause(t); !errors.Is(cause, triopipe.ErrConnectionLost) {
		t.Errorf("cause %v, want ErrConnectionLost", cause)
	}
	second := d.accept()
	if again := second.register().WorkerID; again != id {
		t.Errorf("registered again as %s, first as %s", again, id)
	}
	if r := second.result(second.dispatch("echo", `2`, 5000)); r.Status != protocol.StatusCompleted {
		t.Errorf("%+v", r)
	}
}

func TestWaitsForTheAnswerToWorkerRegister(t *testing.T) {
	d := newWSDispatcher(t)
	w, _ := newWorker(triopipe.Options{BackoffInitial: time.Millisecond})
	runWS(t, w, d.url)
	p := d.accept()
	nextOf[protocol.WorkerRegister](p.peer)
	p.sendRaw("garbage")
	p.send(protocol.HeartbeatAck{}) // skipped: it accepts nothing
	p.send(protocol.WorkerRegistered{WorkerID: "another-id"})
	id := p.dispatch("echo", `"registered"`, 5000)
	if r := nextOf[protocol.TaskResultMessage](p.peer).Result; r.TaskID != id {
		t.Errorf("first result is for %s, want %s", r.TaskID, id)
	}
}

// records keeps what a worker logs, level and message, for tests of what it says.
type records struct {
	mu   sync.Mutex
	seen []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, record slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, record)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// at returns the messages logged at level or above.
func (r *records) at(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var messages []string
	for _, record := range r.seen {
		if record.Level >= level {
			messages = append(messages, record.Message)
		}
	}
	return messages
}

func TestATaskBeforeWorkerRegisteredAcceptsTheRegistration(t *testing.T) {
	// A rust-pipe 0.1 dispatcher never sends WorkerRegistered: it dispatches at once.
	d := newWSDispatcher(t)
	logs := &records{}
	w, _ := newWorker(triopipe.Options{Logger: slog.New(logs)})
	runWS(t, w, d.url)
	p := d.accept()
	nextOf[protocol.WorkerRegister](p.peer)
	id := p.dispatch("echo", `"served"`, 5000)
	if r := p.result(id); r.Status != protocol.StatusCompleted || string(r.Payload) != `"served"` {
		t.Errorf("%+v", r)
	}
	if warnings := logs.at(slog.LevelWarn); len(warnings) > 0 {
		t.Errorf("warned %q", warnings)
	}
	if debug := strings.Join(logs.at(slog.LevelDebug), "\n"); !strings.Contains(debug, "before WorkerRegistered") {
		t.Errorf("no debug line about the early task in %q", debug)
	}
}

func TestAnUnansweredRegistrationIsTakenAsAcceptedAfterConnectTimeout(t *testing.T) {
	// An idle rust-pipe 0.1 dispatcher sends nothing at all: the worker keeps the
	// connection and heartbeats at once (the interval here is far longer than the test).
	d := newWSDispatcher(t)
	w, _ := newWorker(triopipe.Options{ConnectTimeout: 100 * time.Millisecond, HeartbeatInterval: time.Hour, GiveUpAfter: 1})
	ended := runWS(t, w, d.url)
	p := d.accept() // and never answer
	nextOf[protocol.WorkerRegister](p.peer)
	if m := p.next(); reflect.TypeOf(m) != reflect.TypeOf(protocol.Heartbeat{}) {
		t.Fatalf("after the timeout the worker sent %T, want a Heartbeat", m)
	}
	id := p.dispatch("echo", `"still here"`, 5000)
	if r := p.result(id); r.Status != protocol.StatusCompleted {
		t.Errorf("%+v", r)
	}
	select {
	case err := <-ended:
		t.Errorf("RunWebSocket returned %v", err)
	default:
	}
}

func TestGivesUpWhenConfigured(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + listener.Addr().String()
	_ = listener.Close() // connections are refused from now on
	w, _ := newWorker(triopipe.Options{BackoffInitial: time.Millisecond, GiveUpAfter: 3})
	err = waitEnded(t, runWS(t, w, url))
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 failed connections") {
		t.Errorf("RunWebSocket returned %v", err)
	}
}

func TestGracefulShutdownClosesNormally(t *testing.T) {
	d := newWSDispatcher(t)
	w, g := newWorker(triopipe.Options{})
	ended := runWS(t, w, d.url)
	p := d.accept()
	p.register()
	id := p.dispatch("gate", `"finish me"`, 60_000)
	g.waitStarted(t, 1)
	p.send(protocol.Shutdown{Graceful: true})
	close(g.release)
	if r := p.result(id); r.Status != protocol.StatusCompleted {
		t.Errorf("in-flight task: %+v", r)
	}
	if code := p.waitClosed(); code != websocket.StatusNormalClosure {
		t.Errorf("closed with %v, want 1000", code)
	}
	if err := waitEnded(t, ended); err != nil {
		t.Errorf("RunWebSocket returned %v after Shutdown", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	w, _ := newWorker(triopipe.Options{})
	for name, run := range map[string]func() error{
		"URL":         func() error { return w.RunWebSocket(context.Background(), "http://127.0.0.1:1") },
		"worker id":   func() error { return newWorkerWithID("-bad").RunStdio(context.Background(), nil, nil) },
		"no handlers": func() error { return triopipe.NewWorker(triopipe.Options{}).RunStdio(context.Background(), nil, nil) },
		"concurrency": func() error {
			w, _ := newWorker(triopipe.Options{MaxConcurrency: -1})
			return w.RunStdio(context.Background(), nil, nil)
		},
		"backoff span": func() error {
			w, _ := newWorker(triopipe.Options{BackoffInitial: time.Second, BackoffMax: time.Millisecond})
			return w.RunWebSocket(context.Background(), "ws://x")
		},
		"drain timeout": func() error {
			w, _ := newWorker(triopipe.Options{DrainTimeout: -time.Second})
			return w.RunStdio(context.Background(), nil, nil)
		},
	} {
		if err := run(); !errors.Is(err, triopipe.ErrInvalidOptions) {
			t.Errorf("%s: got %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestInvalidPerTypeLimits(t *testing.T) {
	for limits, want := range map[string]string{
		`{"gate": 0}`:            `MaxConcurrencyByType["gate"] is 0: it must be at least 1`,
		`{"gate": 3}`:            `MaxConcurrencyByType["gate"] is 3, more than MaxConcurrency (2)`,
		`{"resize": 1}`:          `MaxConcurrencyByType names "resize", a task type without a handler`,
		`{"echo": -1}`:           `MaxConcurrencyByType["echo"] is -1: it must be at least 1`,
		`{"gate": 2}`:            "",
		`{"echo": 1, "gate": 2}`: "",
	} {
		var byType map[string]int
		if err := json.Unmarshal([]byte(limits), &byType); err != nil {
			t.Fatal(err)
		}
		w, _ := newWorker(triopipe.Options{MaxConcurrency: 2, MaxConcurrencyByType: byType})
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a valid worker stops at once
		err := w.RunStdio(ctx, strings.NewReader(""), io.Discard)
		switch {
		case want == "" && errors.Is(err, triopipe.ErrInvalidOptions):
			t.Errorf("%s refused: %v", limits, err)
		case want != "" && (!errors.Is(err, triopipe.ErrInvalidOptions) || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: got %v, want an ErrInvalidOptions saying %s", limits, err, want)
		}
	}
}

func newWorkerWithID(id string) *triopipe.Worker {
	w, _ := newWorker(triopipe.Options{WorkerID: id})
	return w
}

func TestDefaultWorkerID(t *testing.T) {
	id := triopipe.DefaultWorkerID()
	if err := protocol.ValidateWorkerID(id); err != nil || !strings.HasPrefix(id, "go-") || id == triopipe.DefaultWorkerID() {
		t.Errorf("DefaultWorkerID() = %q (%v)", id, err)
	}
}
