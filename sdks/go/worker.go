// Package triopipe is the Go worker SDK of trio_pipe: it serves task handlers to a
// trio_pipe dispatcher over WebSocket ([Worker.RunWebSocket]) or over stdin and
// stdout ([Worker.RunStdio]), speaking the protocol of docs/protocol.md.
//
//	w := triopipe.NewWorker(triopipe.Options{MaxConcurrency: 8})
//	w.Handle("word-count", triopipe.Typed(countWords))
//	err := w.RunWebSocket(ctx, "ws://127.0.0.1:9876")
//
// Each task runs in its own goroutine with a context that is cancelled on Kill, at
// its timeoutMs deadline and on a Shutdown that is not graceful (see
// [HandlerFunc]); a handler reports with [Progress] and asks for time with
// [ExtendDeadline]. A run drains on SIGTERM and SIGINT ([Worker.Drain]); [Exit]
// turns its return value into the process's exit status. The wire types and the
// codec are in the protocol package.
package triopipe

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	mathrand "math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// Language is what a worker registers as its language.
const Language = "Go"

// Options configure a [Worker]. The zero value of every field means its default.
type Options struct {
	// WorkerID names the worker: 1 to 128 characters of A-Z a-z 0-9 . _ -,
	// starting with a letter or a digit. Default: "go-<hostname>-<8 hex digits>",
	// chosen once per Worker and kept across reconnections. A worker spawned over
	// stdio only labels its messages with it (the dispatcher keeps its own id).
	WorkerID string
	// MaxConcurrency is how many tasks may run at once (default 10). A task
	// dispatched beyond it is answered Failed with WORKER_SATURATED, retryable.
	MaxConcurrency int
	// HeartbeatInterval is the time between heartbeats. Default: 5 s over
	// WebSocket; over stdio, no heartbeats unless it is set.
	HeartbeatInterval time.Duration
	// Tags describe the worker in its registration (WebSocket).
	Tags []string
	// ConnectTimeout bounds opening a WebSocket connection, the wait for the
	// dispatcher to accept the registration (silence for this long counts as
	// acceptance, see [Worker.RunWebSocket]), each write, and the flush of results
	// at shutdown (default 10 s).
	ConnectTimeout time.Duration
	// BackoffInitial and BackoffMax bound the delay before reconnecting: it is
	// drawn uniformly from [0, cap], where cap starts at BackoffInitial and doubles
	// with each failed attempt up to BackoffMax (defaults 100 ms and 10 s). A
	// successful registration resets it.
	BackoffInitial, BackoffMax time.Duration
	// GiveUpAfter is how many failed connections in a row (refused, closed
	// before the registration was accepted, or lost) make RunWebSocket return an error; 0, the
	// default, reconnects forever. 1 never reconnects.
	GiveUpAfter int
	// Logger receives the worker's log (default [slog.Default], which writes to
	// stderr). In stdio mode it must not write to stdout.
	Logger *slog.Logger
	// DrainTimeout is how long the drain that SIGTERM or SIGINT begins lets the
	// tasks in flight finish before it cancels them (see [Worker.Drain]). Default:
	// the milliseconds in the environment variable TRIO_PIPE_DRAIN_TIMEOUT_MS when
	// it is set and not empty (0 cancels at once), else 30 s.
	DrainTimeout time.Duration
	// NoSignalHandler keeps RunWebSocket and RunStdio from handling SIGTERM and
	// SIGINT, for a program that handles them itself and calls [Worker.Drain].
	NoSignalHandler bool
	// Token is sent in every WebSocket opening handshake as the header
	// "Authorization: Bearer <token>" (never in the URL, never logged). Default:
	// the environment variable TRIO_PIPE_TOKEN. A stdio worker has no handshake
	// and ignores it.
	Token string
	// TLSConfig verifies a wss:// dispatcher's certificate (RootCAs: your CA) and
	// presents the worker's client certificate for mutual TLS (Certificates).
	// Default: the system's roots, no client certificate. See [LoadTLSConfig].
	TLSConfig *tls.Config
	// MaxConcurrencyByType limits the tasks of some types that may run at once,
	// within MaxConcurrency: {"render": 2}. Each limit is 1 to MaxConcurrency, for
	// a type that has a handler. It is sent in the registration (WebSocket), and a
	// task dispatched beyond its type's limit is answered Failed with
	// WORKER_SATURATED, retryable.
	MaxConcurrencyByType map[string]int
}

// Worker serves task handlers to a dispatcher. Register handlers with
// [Worker.Handle], then call [Worker.RunWebSocket] or [Worker.RunStdio].
type Worker struct {
	opts     Options
	mu       sync.Mutex
	handlers map[string]HandlerFunc
	drain    *drainState
}

// NewWorker returns a worker with no handlers. Options are checked when it runs.
func NewWorker(opts Options) *Worker {
	if opts.WorkerID == "" {
		opts.WorkerID = DefaultWorkerID()
	}
	return &Worker{opts: opts, handlers: map[string]HandlerFunc{}, drain: newDrainState()}
}

// Handle registers h for taskType. It panics if taskType is empty, h is nil, or
// taskType already has a handler. A run serves the handlers registered when it
// started.
func (w *Worker) Handle(taskType string, h HandlerFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case taskType == "":
		panic("triopipe: empty task type")
	case h == nil:
		panic("triopipe: nil handler for task type " + taskType)
	case w.handlers[taskType] != nil:
		panic("triopipe: a handler for task type " + taskType + " is already registered")
	}
	w.handlers[taskType] = h
}

// config is a worker's validated settings, with defaults filled in, for one run.
type config struct {
	Options
	handlers  map[string]HandlerFunc
	startedAt time.Time // heartbeat uptime counts from here
}

// drainTimeoutVariable holds the default of Options.DrainTimeout, in milliseconds.
const drainTimeoutVariable = "TRIO_PIPE_DRAIN_TIMEOUT_MS"

// ErrInvalidOptions is wrapped by the error of a run whose Options or handlers
// are unusable; such a run fails before any I/O.
var ErrInvalidOptions = errors.New("triopipe: invalid options")

func (w *Worker) config(defaultHeartbeat time.Duration) (*config, error) {
	w.mu.Lock()
	c := &config{Options: w.opts, handlers: maps.Clone(w.handlers), startedAt: time.Now()}
	w.mu.Unlock()
	c.MaxConcurrencyByType = maps.Clone(c.MaxConcurrencyByType)
	var problems []string
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
		if value := os.Getenv(drainTimeoutVariable); value != "" {
			ms, err := strconv.ParseInt(value, 10, 64)
			if err != nil || ms < 0 || ms > math.MaxInt64/int64(time.Millisecond) {
				problems = append(problems, fmt.Sprintf("%s is %q: expected a whole number of milliseconds, 0 or more", drainTimeoutVariable, value))
			} else {
				c.DrainTimeout = time.Duration(ms) * time.Millisecond
			}
		}
	}
	setDefault(&c.MaxConcurrency, 10)
	setDefault(&c.HeartbeatInterval, defaultHeartbeat)
	setDefault(&c.ConnectTimeout, 10*time.Second)
	setDefault(&c.BackoffInitial, 100*time.Millisecond)
	setDefault(&c.BackoffMax, max(10*time.Second, c.BackoffInitial))
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := protocol.ValidateWorkerID(c.WorkerID); err != nil {
		problems = append(problems, err.Error())
	}
	if len(c.handlers) == 0 {
		problems = append(problems, "no handlers")
	}
	for _, field := range []struct {
		name  string
		value int64
	}{
		{"MaxConcurrency", int64(c.MaxConcurrency)},
		{"HeartbeatInterval", int64(c.HeartbeatInterval)},
		{"ConnectTimeout", int64(c.ConnectTimeout)},
		{"BackoffInitial", int64(c.BackoffInitial)},
		{"GiveUpAfter", int64(c.GiveUpAfter)},
		{"DrainTimeout", int64(c.DrainTimeout)},
	} {
		if field.value < 0 {
			problems = append(problems, field.name+" is negative")
		}
	}
	for _, taskType := range slices.Sorted(maps.Keys(c.MaxConcurrencyByType)) {
		switch limit := c.MaxConcurrencyByType[taskType]; {
		case c.handlers[taskType] == nil:
			problems = append(problems, fmt.Sprintf("MaxConcurrencyByType names %q, a task type without a handler", taskType))
		case limit < 1:
			problems = append(problems, fmt.Sprintf("MaxConcurrencyByType[%q] is %d: it must be at least 1", taskType, limit))
		case limit > c.MaxConcurrency:
			problems = append(problems, fmt.Sprintf("MaxConcurrencyByType[%q] is %d, more than MaxConcurrency (%d)", taskType, limit, c.MaxConcurrency))
		}
	}
	if c.BackoffMax < c.BackoffInitial {
		problems = append(problems, "BackoffMax is less than BackoffInitial")
	}
	if problems != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
	}
	return c, nil
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// supportedTasks lists the task types that have a handler, sorted.
func (c *config) supportedTasks() []string {
	return slices.Sorted(maps.Keys(c.handlers))
}

// backoff returns the delay before reconnection attempt number failures (0 first).
func (c *config) backoff(failures int) time.Duration {
	limit := c.BackoffInitial
	for ; failures > 0 && limit < c.BackoffMax; failures-- {
		limit *= 2
	}
	limit = min(limit, c.BackoffMax)
	return time.Duration(mathrand.Int64N(int64(limit) + 1))
}

var notIDChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// DefaultWorkerID returns a fresh worker id, "go-<hostname>-<8 hex digits>".
func DefaultWorkerID() string {
	host, _ := os.Hostname()
	host = strings.Trim(notIDChars.ReplaceAllString(host, "-"), "-.")
	if len(host) > 64 {
		host = host[:64]
	}
	if host == "" {
		host = "host"
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	return "go-" + host + "-" + hex.EncodeToString(suffix)
}
