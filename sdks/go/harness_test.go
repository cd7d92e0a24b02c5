package triopipe_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// patience bounds every wait in these tests: generous, since nothing here should
// come near it on a working worker.
const patience = 10 * time.Second

// peer plays the dispatcher's side of one connection.
type peer struct {
	t        *testing.T
	write    func(frame []byte) error
	messages chan protocol.Message // what the worker wrote, decoded
}

func newPeer(t *testing.T, write func([]byte) error) *peer {
	return &peer{t: t, write: write, messages: make(chan protocol.Message, 100)}
}

// deliver decodes a frame from the worker. A frame that does not decode, or is not
// written exactly as the protocol's canonical text (as the conformance kit checks:
// an optional field written when empty, for one), fails the test.
func (p *peer) deliver(frame []byte) {
	message, err := protocol.Decode(frame)
	if err != nil {
		p.t.Errorf("the worker wrote a bad frame %q: %v", frame, err)
		return
	}
	if canonical, err := protocol.Encode(message); err != nil || string(canonical) != string(frame) {
		p.t.Errorf("the worker wrote a frame that is not canonical\n got: %.300s\nwant: %.300s", frame, canonical)
	}
	p.messages <- message
}

func (p *peer) send(m protocol.Message) {
	p.t.Helper()
	frame, err := protocol.Encode(m)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(string(frame))
}

func (p *peer) sendRaw(frame string) {
	p.t.Helper()
	if err := p.write([]byte(frame)); err != nil {
		p.t.Fatalf("writing to the worker: %v", err)
	}
}

var taskCounter atomic.Uint32

// dispatch sends a task and returns its id.
func (p *peer) dispatch(taskType, payload string, timeoutMs int64) protocol.UUID {
	p.t.Helper()
	var id protocol.UUID
	n := taskCounter.Add(1)
	id[0], id[12], id[13], id[14], id[15] = 0x7a, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	metadata := protocol.DefaultMetadata()
	metadata.TimeoutMs = timeoutMs
	p.send(protocol.TaskDispatch{Task: protocol.Task{ID: id, TaskType: taskType, Payload: json.RawMessage(payload), Metadata: metadata}})
	return id
}

// next returns the worker's next message.
func (p *peer) next() protocol.Message {
	p.t.Helper()
	select {
	case m := <-p.messages:
		return m
	case <-time.After(patience):
		p.t.Fatal("no message from the worker")
		return nil
	}
}

// nextOf returns the worker's next message of type T, skipping others.
func nextOf[T protocol.Message](p *peer) T {
	p.t.Helper()
	for {
		if m, ok := p.next().(T); ok {
			return m
		}
	}
}

// result returns the next TaskResult, which must be for task id.
func (p *peer) result(id protocol.UUID) protocol.TaskResult {
	p.t.Helper()
	r := nextOf[protocol.TaskResultMessage](p).Result
	if r.TaskID != id {
		p.t.Fatalf("result for task %s, want one for %s: %+v", r.TaskID, id, r)
	}
	return r
}

// expectError checks a result's status and error.
func expectError(t *testing.T, r protocol.TaskResult, status protocol.TaskStatus, code string, retryable bool) {
	t.Helper()
	if r.Status != status || r.Error == nil || r.Error.Code != code || r.Error.Retryable != retryable {
		t.Fatalf("got %s %+v, want %s with code %s, retryable %v", r.Status, r.Error, status, code, retryable)
	}
}

// stdioWorker is a worker served by RunStdio over in-memory pipes.
type stdioWorker struct {
	*peer
	stdin *io.PipeWriter
	ended chan error // RunStdio's return value
}

func startStdio(t *testing.T, ctx context.Context, w *triopipe.Worker) *stdioWorker {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	s := &stdioWorker{
		peer:  newPeer(t, func(frame []byte) error { _, err := stdinW.Write(append(frame, '\n')); return err }),
		stdin: stdinW,
		ended: make(chan error, 1),
	}
	go func() {
		lines := bufio.NewScanner(stdoutR)
		lines.Buffer(nil, protocol.MaxFrameSize)
		for lines.Scan() {
			s.deliver(lines.Bytes())
		}
	}()
	go func() { s.ended <- w.RunStdio(ctx, stdinR, stdoutW) }()
	t.Cleanup(func() {
		_ = stdinW.Close()
		_ = stdoutW.Close()
	})
	return s
}

// wait returns RunStdio's return value.
func (s *stdioWorker) wait() error {
	s.t.Helper()
	select {
	case err := <-s.ended:
		return err
	case <-time.After(patience):
		s.t.Fatal("RunStdio did not return")
		return nil
	}
}

// wsDispatcher accepts WebSocket connections for a test to serve by hand.
type wsDispatcher struct {
	t     *testing.T
	url   string
	conns chan *websocket.Conn
}

func newWSDispatcher(t *testing.T) *wsDispatcher {
	d := &wsDispatcher{t: t, conns: make(chan *websocket.Conn, 10)}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conn, err := websocket.Accept(w, r, nil); err == nil {
			conn.SetReadLimit(-1)
			d.conns <- conn
		}
	}))
	d.url = "ws" + strings.TrimPrefix(server.URL, "http")
	t.Cleanup(func() {
		server.Close()
		close(d.conns)
		for conn := range d.conns {
			_ = conn.CloseNow()
		}
	})
	return d
}

// wsPeer is the dispatcher's side of one accepted WebSocket connection.
type wsPeer struct {
	*peer
	conn   *websocket.Conn
	closed chan error // the error that ended reading: how the worker closed
}

// accept waits for the worker's next connection.
func (d *wsDispatcher) accept() *wsPeer {
	d.t.Helper()
	var conn *websocket.Conn
	select {
	case conn = <-d.conns:
	case <-time.After(patience):
		d.t.Fatal("the worker did not connect")
	}
	p := &wsPeer{conn: conn, closed: make(chan error, 1)}
	p.peer = newPeer(d.t, func(frame []byte) error {
		return conn.Write(context.Background(), websocket.MessageText, frame)
	})
	go func() {
		for {
			_, frame, err := conn.Read(context.Background())
			if err != nil {
				p.closed <- err
				return
			}
			p.deliver(frame)
		}
	}()
	return p
}

// register expects the worker's WorkerRegister and accepts it.
func (p *wsPeer) register() protocol.WorkerRegistration {
	p.t.Helper()
	m, ok := p.next().(protocol.WorkerRegister)
	if !ok {
		p.t.Fatalf("first message is %T, want WorkerRegister", m)
	}
	p.send(protocol.WorkerRegistered{WorkerID: m.Registration.WorkerID})
	return m.Registration
}

// waitClosed returns the close status the worker sent.
func (p *wsPeer) waitClosed() websocket.StatusCode {
	p.t.Helper()
	select {
	case err := <-p.closed:
		return websocket.CloseStatus(err)
	case <-time.After(patience):
		p.t.Fatal("the worker did not close the connection")
		return 0
	}
}

// gate is a handler that waits until released or cancelled, records the cause of
// its cancellation, and counts the handlers running at once.
type gate struct {
	started chan struct{}
	release chan struct{}
	causes  chan error
	running atomic.Int32
	peak    atomic.Int32 // the most handlers that ran at once
}

func newGate() *gate {
	return &gate{started: make(chan struct{}, 10), release: make(chan struct{}), causes: make(chan error, 10)}
}

func (g *gate) handle(ctx context.Context, payload json.RawMessage) (json.RawMessage, error) {
	now := g.running.Add(1)
	defer g.running.Add(-1)
	for peak := g.peak.Load(); now > peak && !g.peak.CompareAndSwap(peak, now); peak = g.peak.Load() {
	}
	g.started <- struct{}{}
	select {
	case <-g.release:
		return payload, nil
	case <-ctx.Done():
		g.causes <- context.Cause(ctx)
		return nil, ctx.Err()
	}
}

func (g *gate) waitStarted(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-g.started:
		case <-time.After(patience):
			t.Fatalf("%d of %d handlers started", i, n)
		}
	}
}

func (g *gate) cause(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.causes:
		return err
	case <-time.After(patience):
		t.Fatal("the handler was not cancelled")
		return nil
	}
}

// newWorker returns a worker with an "echo" handler and a "gate" handler.
func newWorker(opts triopipe.Options) (*triopipe.Worker, *gate) {
	if opts.WorkerID == "" {
		opts.WorkerID = fmt.Sprintf("test-%d", taskCounter.Add(1))
	}
	w := triopipe.NewWorker(opts)
	g := newGate()
	w.Handle("echo", func(_ context.Context, payload json.RawMessage) (json.RawMessage, error) { return payload, nil })
	w.Handle("gate", g.handle)
	return w, g
}
