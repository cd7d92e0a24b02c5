package triopipe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Drain stops the worker gracefully, as SIGTERM does. Each of its runs sends the
// dispatcher a Backpressure with shouldThrottle and draining true, takes no new
// task (one that arrives is answered Failed, WORKER_SHUTTING_DOWN, retryable), and
// lets the tasks in flight finish for up to grace. Then it cancels those still
// running (their contexts' cause is [ErrShutdown]) and reports them Cancelled,
// WORKER_SHUTTING_DOWN, retryable, without waiting for their handlers to return;
// closes the connection with code 1000 (over stdio: stops writing); and returns nil
// ([ErrInterrupted] when SIGINT began the drain).
//
// Drain returns at once; the runs return when they are done. A run that is not
// connected and registered returns at once, a WebSocket run does not reconnect,
// and a run started later returns at once: a worker drains once. Called again,
// Drain can only bring the deadline sooner: Drain(0) cancels the remaining tasks
// now. A negative grace counts as 0.
func (w *Worker) Drain(grace time.Duration) {
	w.drain.begin(max(grace, 0), nil)
}

// ErrInterrupted is what RunWebSocket and RunStdio return after a drain that SIGINT
// (Ctrl-C) began. [ExitStatus] maps it to 130, the status of a program stopped by
// SIGINT.
var ErrInterrupted = errors.New("triopipe: interrupted")

// ExitStatus is the exit status for a run's return value: 0 for nil (which
// includes a drain that SIGTERM began), 130 for [ErrInterrupted], 1 for any other
// error.
func ExitStatus(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrInterrupted):
		return 130
	default:
		return 1
	}
}

// Exit ends the program with ExitStatus(err), for a main whose work ends with the
// worker's run: an error other than [ErrInterrupted] is written to stderr first, as
// one line.
//
//	triopipe.Exit(w.RunWebSocket(context.Background(), url))
func Exit(err error) {
	status := ExitStatus(err)
	if status == 1 {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
	}
	os.Exit(status)
}

// drainState is a worker's drain: it begins once, and its deadline can only come
// sooner. Runs follow it through changed.
type drainState struct {
	mu       sync.Mutex
	begun    bool
	deadline time.Time
	signal   os.Signal     // the signal that began it; nil for Worker.Drain
	changed  chan struct{} // closed, and replaced, when it begins or its deadline moves
}

func newDrainState() *drainState {
	return &drainState{changed: make(chan struct{})}
}

// begin starts the drain with the given grace, or brings its deadline sooner.
func (d *drainState) begin(grace time.Duration, signal os.Signal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	deadline := time.Now().Add(grace)
	if d.begun && !deadline.Before(d.deadline) {
		return
	}
	if !d.begun {
		d.begun, d.signal = true, signal
	}
	d.deadline = deadline
	close(d.changed)
	d.changed = make(chan struct{})
}

// state returns whether the drain has begun, its deadline, and a channel that is
// closed at the next change (which, before the drain, is its beginning).
func (d *drainState) state() (begun bool, deadline time.Time, changed <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.begun, d.deadline, d.changed
}

// beganWith returns the signal that began the drain, nil if none did.
func (d *drainState) beganWith() os.Signal {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.signal
}

// stopped is what a run returns once it has stopped without an error.
func (d *drainState) stopped() error {
	if d.beganWith() == os.Interrupt {
		return ErrInterrupted
	}
	return nil
}

// untilBegun returns a context of ctx that is also cancelled when the drain
// begins, for the steps of a run that a drain ends at once (connecting,
// registering).
func (d *drainState) untilBegun(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	begun, _, changed := d.state()
	if begun {
		cancel()
		return ctx, cancel
	}
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// handleSignals drains the worker on SIGTERM or SIGINT, and cancels what is left
// on the next one, until the returned function is called. A signal that the
// program was started with ignored (SIGINT for a background job of a shell) stays
// ignored. It does nothing when Options.NoSignalHandler is set.
func (w *Worker) handleSignals(c *config) (stop func()) {
	var watched []os.Signal
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		if !signal.Ignored(sig) {
			watched = append(watched, sig)
		}
	}
	if c.NoSignalHandler || len(watched) == 0 {
		return func() {}
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, watched...)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		grace := c.DrainTimeout
		for {
			select {
			case sig := <-signals:
				w.drain.begin(grace, sig)
				grace = 0 // the next signal cuts the drain short
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(signals)
		close(done)
		<-finished
	}
}
