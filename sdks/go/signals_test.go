package triopipe_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// These tests run the test binary itself as a worker process (TestMain turns it into
// one when testWorkerVariable is set) and send it real signals.
const testWorkerVariable = "TRIOPIPE_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(testWorkerVariable) != "" {
		runTestWorker()
	}
	os.Exit(m.Run())
}

// runTestWorker serves "echo" and two handlers that wait on a TCP connection to
// payload.addr: "hold" completes when a byte arrives and honours its context,
// "stubborn" ignores its context. It connects to TRIO_PIPE_URL when set, else serves
// on stdin/stdout; the SDK reads TRIO_PIPE_DRAIN_TIMEOUT_MS. It ends the process.
func runTestWorker() {
	w := triopipe.NewWorker(triopipe.Options{
		WorkerID:       "signalled",
		MaxConcurrency: 4,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	w.Handle("echo", triopipe.Typed(func(_ context.Context, in any) (any, error) { return in, nil }))
	w.Handle("hold", triopipe.Typed(func(ctx context.Context, in heldTask) (string, error) { return in.hold(ctx, true) }))
	w.Handle("stubborn", triopipe.Typed(func(ctx context.Context, in heldTask) (string, error) { return in.hold(ctx, false) }))
	if url := os.Getenv("TRIO_PIPE_URL"); url != "" {
		triopipe.Exit(w.RunWebSocket(context.Background(), url))
	}
	triopipe.Exit(w.RunStdio(context.Background(), os.Stdin, os.Stdout))
}

type heldTask struct {
	Addr string `json:"addr"`
}

func (h heldTask) hold(ctx context.Context, honourContext bool) (string, error) {
	conn, err := net.Dial("tcp", h.Addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if honourContext {
		defer context.AfterFunc(ctx, func() { _ = conn.Close() })()
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		if ctx.Err() != nil {
			return "", context.Cause(ctx)
		}
		return "", err
	}
	return "released", nil
}

// holds is the test's end of the connections of "hold" and "stubborn" handlers:
// each connection accepted is a handler that has started.
type holds struct {
	t        *testing.T
	listener net.Listener
	conns    chan net.Conn
}

func newHolds(t *testing.T) *holds {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &holds{t: t, listener: listener, conns: make(chan net.Conn, 10)}
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				close(h.conns)
				return
			}
			h.conns <- conn
		}
	}()
	t.Cleanup(func() {
		_ = listener.Close()
		for conn := range h.conns {
			_ = conn.Close()
		}
	})
	return h
}

func (h *holds) payload() string {
	return fmt.Sprintf(`{"addr":%q}`, h.listener.Addr().String())
}

// started waits for n handlers to start and returns their connections.
func (h *holds) started(n int) []net.Conn {
	h.t.Helper()
	var conns []net.Conn
	for len(conns) < n {
		select {
		case conn := <-h.conns:
			h.t.Cleanup(func() { _ = conn.Close() })
			conns = append(conns, conn)
		case <-time.After(patience):
			h.t.Fatalf("%d of %d handlers started", len(conns), n)
		}
	}
	return conns
}

func release(t *testing.T, conns []net.Conn) {
	t.Helper()
	for _, conn := range conns {
		if _, err := conn.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
}

// workerProcess is the test binary running runTestWorker.
type workerProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr bytes.Buffer // read once exited is closed
	exited chan struct{}
	*peer                // over stdin/stdout; nil over WebSocket
	stdout chan struct{} // closed at the end of stdout (stdio)
}

// process says how to start a worker process.
type process struct {
	binary       string // default: this test binary, which runs runTestWorker
	url          string // the dispatcher's, in TRIO_PIPE_URL; none: stdio
	drainTimeout string // TRIO_PIPE_DRAIN_TIMEOUT_MS
	shell        string // a shell command that runs the binary as "$0"
}

// start starts the worker process, which is killed at the end of the test.
func (o process) start(t *testing.T) *workerProcess {
	t.Helper()
	var err error
	if o.binary == "" {
		if o.binary, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(o.binary)
	if o.shell != "" {
		cmd = exec.Command("/bin/sh", "-c", o.shell, o.binary)
	}
	cmd.Env = append(os.Environ(), testWorkerVariable+"=1", "TRIO_PIPE_URL="+o.url, "TRIO_PIPE_DRAIN_TIMEOUT_MS="+o.drainTimeout,
		"TRIO_PIPE_MAX_CONCURRENCY=4", "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE")) // under -race: no pause of a second at exit
	p := &workerProcess{t: t, cmd: cmd, exited: make(chan struct{}), stdout: make(chan struct{})}
	cmd.Stderr = &p.stderr
	var stdin io.WriteCloser
	var stdout io.ReadCloser
	if o.url == "" {
		if stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if stdout, err = cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
		p.peer = newPeer(t, func(frame []byte) error { _, err := stdin.Write(append(frame, '\n')); return err })
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if stdout != nil {
		go func() {
			defer close(p.stdout)
			lines := bufio.NewScanner(stdout)
			lines.Buffer(nil, protocol.MaxFrameSize)
			for lines.Scan() {
				p.deliver(lines.Bytes())
			}
		}()
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // if the test failed before it exited
		<-p.exited
		if t.Failed() {
			t.Logf("the worker's stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *workerProcess) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// waitExit returns the process's exit status, after checking its stderr holds no
// stack trace.
func (p *workerProcess) waitExit() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(patience):
		p.t.Fatal("the worker process did not exit")
	}
	if log := p.stderr.String(); strings.Contains(log, "goroutine ") || strings.Contains(log, "panic") {
		p.t.Errorf("a stack trace on stderr:\n%s", log)
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitStdoutEnd returns once the worker has closed its stdout.
func (p *workerProcess) waitStdoutEnd() {
	p.t.Helper()
	select {
	case <-p.stdout:
	case <-time.After(patience):
		p.t.Fatal("the worker did not end its stdout")
	}
}

func TestSIGTERMLetsTasksInFlightFinish(t *testing.T) {
	h := newHolds(t)
	p := process{}.start(t)
	first := p.dispatch("hold", h.payload(), 60_000)
	second := p.dispatch("hold", h.payload(), 60_000)
	conns := h.started(2)
	p.signal(syscall.SIGTERM)
	expectDraining(t, p.peer, 0.5)
	late := p.dispatch("echo", `"crossed the signal"`, 5000)
	expectError(t, p.result(late), protocol.StatusFailed, protocol.CodeWorkerShuttingDown, true)
	release(t, conns)
	finished := map[protocol.UUID]bool{}
	for range 2 {
		r := nextOf[protocol.TaskResultMessage](p.peer).Result
		if r.Status != protocol.StatusCompleted || string(r.Payload) != `"released"` {
			t.Errorf("in-flight task: %+v", r)
		}
		finished[r.TaskID] = true
	}
	if !finished[first] || !finished[second] {
		t.Errorf("finished %v, want %s and %s", finished, first, second)
	}
	p.waitStdoutEnd()
	if status := p.waitExit(); status != 0 {
		t.Errorf("exit status %d, want 0", status)
	}
}

func TestSIGTERMOverWebSocket(t *testing.T) {
	h := newHolds(t)
	d := newWSDispatcher(t)
	p := process{url: d.url}.start(t)
	ws := d.accept()
	ws.register()
	id := ws.dispatch("hold", h.payload(), 60_000)
	conns := h.started(1)
	p.signal(syscall.SIGTERM)
	expectDraining(t, ws.peer, 0.25)
	release(t, conns)
	if r := ws.result(id); r.Status != protocol.StatusCompleted {
		t.Errorf("in-flight task: %+v", r)
	}
	if code := ws.waitClosed(); code != websocket.StatusNormalClosure {
		t.Errorf("closed with %v, want 1000", code)
	}
	if status := p.waitExit(); status != 0 {
		t.Errorf("exit status %d, want 0", status)
	}
}

func TestAHandlerOutlivingTheDrainTimeoutIsCancelled(t *testing.T) {
	h := newHolds(t)
	p := process{drainTimeout: "100"}.start(t)
	honouring := p.dispatch("hold", h.payload(), 60_000)
	ignoring := p.dispatch("stubborn", h.payload(), 60_000)
	h.started(2)
	p.signal(syscall.SIGTERM)
	expectDraining(t, p.peer, 0.5)
	for range 2 {
		r := nextOf[protocol.TaskResultMessage](p.peer).Result
		expectError(t, r, protocol.StatusCancelled, protocol.CodeWorkerShuttingDown, true)
		if r.TaskID != honouring && r.TaskID != ignoring {
			t.Errorf("a result for %s", r.TaskID)
		}
	}
	p.waitStdoutEnd()
	if status := p.waitExit(); status != 0 {
		t.Errorf("exit status %d, want 0", status)
	}
}

func TestASecondSIGTERMStopsAtOnce(t *testing.T) {
	h := newHolds(t)
	p := process{drainTimeout: "3600000"}.start(t) // an hour's grace
	id := p.dispatch("stubborn", h.payload(), 60_000)
	h.started(1)
	p.signal(syscall.SIGTERM)
	expectDraining(t, p.peer, 0.25)
	p.signal(syscall.SIGTERM)
	expectError(t, p.result(id), protocol.StatusCancelled, protocol.CodeWorkerShuttingDown, true)
	p.waitStdoutEnd()
	if status := p.waitExit(); status != 0 {
		t.Errorf("exit status %d, want 0", status)
	}
}

func TestSIGINTDrainsAndExits130(t *testing.T) {
	h := newHolds(t)
	p := process{}.start(t)
	id := p.dispatch("hold", h.payload(), 60_000)
	conns := h.started(1)
	p.signal(syscall.SIGINT)
	expectDraining(t, p.peer, 0.25)
	release(t, conns)
	if r := p.result(id); r.Status != protocol.StatusCompleted {
		t.Errorf("in-flight task: %+v", r)
	}
	p.waitStdoutEnd()
	if status := p.waitExit(); status != 130 {
		t.Errorf("exit status %d, want 130", status)
	}
}

// A worker started with SIGINT ignored (as a shell starts a background job) leaves
// it ignored: SIGINT then SIGTERM is one drain begun by SIGTERM, not a drain cut
// short, and not an exit with 130.
func TestAnIgnoredSIGINTStaysIgnored(t *testing.T) {
	h := newHolds(t)
	p := process{shell: `trap "" INT; exec "$0"`}.start(t)
	id := p.dispatch("hold", h.payload(), 60_000)
	conns := h.started(1)
	p.signal(syscall.SIGINT)
	p.signal(syscall.SIGTERM)
	expectDraining(t, p.peer, 0.25)
	release(t, conns)
	if r := p.result(id); r.Status != protocol.StatusCompleted {
		t.Errorf("in-flight task: %+v", r)
	}
	if status := p.waitExit(); status != 0 {
		t.Errorf("exit status %d, want 0", status)
	}
}

func TestAnErrorExitsWithOneLine(t *testing.T) {
	p := process{drainTimeout: "soon"}.start(t)
	if status := p.waitExit(); status != 1 {
		t.Errorf("exit status %d, want 1", status)
	}
	if log := strings.TrimSpace(p.stderr.String()); strings.Contains(log, "\n") || !strings.Contains(log, "TRIO_PIPE_DRAIN_TIMEOUT_MS") {
		t.Errorf("stderr, want one line naming the variable:\n%s", log)
	}
}
