package triopipe_test

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/coder/websocket"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// The conformance kit's sigterm-drain case, played against the conformance worker
// program itself (examples/conformance-worker) in both modes: sleep tasks, SIGTERM,
// the draining Backpressure, the tasks' Completed results (or, with a short
// TRIO_PIPE_DRAIN_TIMEOUT_MS, Cancelled WORKER_SHUTTING_DOWN retryable), the close
// (code 1000, or the end of stdout), and exit status 0.
func TestTheConformanceWorkerDrainsOnSIGTERM(t *testing.T) {
	binary := filepath.Join(t.TempDir(), "conformance-worker")
	if output, err := exec.Command("go", "build", "-o", binary, "./examples/conformance-worker").CombinedOutput(); err != nil {
		t.Fatalf("building the conformance worker: %v\n%s", err, output)
	}
	for _, c := range []struct {
		name         string
		websocket    bool
		drainTimeout string // TRIO_PIPE_DRAIN_TIMEOUT_MS
		sleep        string // the payload of the sleep tasks
		want         protocol.TaskStatus
	}{
		{"stdio", false, "", `{"ms":2000}`, protocol.StatusCompleted},
		{"websocket", true, "", `{"ms":2000}`, protocol.StatusCompleted},
		{"stdio, short drain timeout", false, "100", `{"ms":60000}`, protocol.StatusCancelled},
		{"websocket, short drain timeout", true, "100", `{"ms":60000}`, protocol.StatusCancelled},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			worker := process{binary: binary, drainTimeout: c.drainTimeout}
			var d *wsDispatcher
			if c.websocket {
				d = newWSDispatcher(t)
				worker.url = d.url
			}
			proc := worker.start(t)
			p := proc.peer
			var ws *wsPeer
			if c.websocket {
				ws = d.accept()
				ws.register()
				p = ws.peer
			}
			p.dispatch("sleep", c.sleep, 120_000)
			p.dispatch("sleep", c.sleep, 120_000)
			// Read after the sleeps: both are running when the signal comes.
			p.result(p.dispatch("echo", `"after the sleeps"`, 5000))
			proc.signal(syscall.SIGTERM)
			expectDraining(t, p, 0.5)
			for range 2 {
				r := nextOf[protocol.TaskResultMessage](p).Result
				if c.want == protocol.StatusCancelled {
					expectError(t, r, protocol.StatusCancelled, protocol.CodeWorkerShuttingDown, true)
				} else if r.Status != c.want || string(r.Payload) != `{"sleptMs":2000}` {
					t.Errorf("got %+v, want it Completed", r)
				}
			}
			if ws != nil {
				if code := ws.waitClosed(); code != websocket.StatusNormalClosure {
					t.Errorf("closed with %v, want 1000", code)
				}
			} else {
				proc.waitStdoutEnd()
			}
			if status := proc.waitExit(); status != 0 {
				t.Errorf("exit status %d, want 0", status)
			}
		})
	}
}
