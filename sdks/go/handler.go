package triopipe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// HandlerFunc runs one task: it gets the task's payload as JSON and returns the
// result payload as JSON, or an error that fails the task.
//
// ctx is cancelled when the dispatcher sends Kill for the task, when the task's
// timeoutMs runs out (counted from receipt, and moved by [ExtendDeadline]), on a
// Shutdown that is not graceful, when a drain's grace runs out, and when the
// worker stops or loses its connection; [context.Cause] tells which ([ErrKilled],
// [ErrTaskTimeout], [ErrShutdown], [ErrConnectionLost] or the cause of the context
// passed to Run; ctx.Err() is context.Canceled whatever the cause). ctx.Deadline()
// is the task's current deadline. A handler must return soon after ctx is done:
// its task holds a concurrency slot until it returns. [Progress] and
// [ExtendDeadline] report on the task while it runs.
//
// Returning a [*TaskFailure] (possibly wrapped) fails the task with its code; any
// other error fails it with HANDLER_ERROR, retryable. A panic is recovered and
// counts as an error.
type HandlerFunc func(ctx context.Context, payload json.RawMessage) (json.RawMessage, error)

// Typed adapts a handler of Go values to a [HandlerFunc]: the payload is decoded
// into In with encoding/json, and the Out returned is encoded back. A payload that
// does not decode into In fails the task with PARSE_ERROR (not retryable) without
// calling fn, and so does an Out that cannot be encoded.
//
//	type Resize struct{ URL string `json:"url"`; Width int `json:"width"` }
//	w.Handle("resize", triopipe.Typed(func(ctx context.Context, r Resize) (Image, error) { ... }))
func Typed[In, Out any](fn func(ctx context.Context, in In) (Out, error)) HandlerFunc {
	return func(ctx context.Context, payload json.RawMessage) (json.RawMessage, error) {
		var in In
		if err := json.Unmarshal(payload, &in); err != nil {
			return nil, &TaskFailure{
				Code:    protocol.CodeParseError,
				Message: fmt.Sprintf("payload does not match %T: %v", in, err),
			}
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		result, err := json.Marshal(out)
		if err != nil {
			return nil, &TaskFailure{
				Code:    protocol.CodeParseError,
				Message: fmt.Sprintf("result payload is not JSON: %v", err),
			}
		}
		return result, nil
	}
}

// TaskFailure is an error a handler returns to fail its task with a code of its
// choosing, and to say whether a retry can help:
//
//	return nil, &triopipe.TaskFailure{Code: "BAD_INPUT", Message: "url must be absolute"}
type TaskFailure struct {
	Code      string
	Message   string
	Retryable bool
}

func (f *TaskFailure) Error() string { return f.Code + ": " + f.Message }

// The causes of a handler's context cancellation (see [HandlerFunc]).
var (
	// ErrKilled: the dispatcher sent Kill for the task. The task is reported
	// Cancelled with code KILLED.
	ErrKilled = errors.New("triopipe: task killed by the dispatcher")
	// ErrTaskTimeout: the task's timeoutMs ran out. It is reported TimedOut with
	// code TIMEOUT.
	ErrTaskTimeout = errors.New("triopipe: task timed out")
	// ErrShutdown: the dispatcher sent a Shutdown that is not graceful, or the
	// worker's drain ran out of time (see [Worker.Drain]). The task is reported
	// Cancelled with code WORKER_SHUTTING_DOWN, retryable.
	ErrShutdown = errors.New("triopipe: worker shut down")
	// ErrConnectionLost: the connection to the dispatcher was lost; no result can
	// be delivered (the dispatcher retries the task elsewhere).
	ErrConnectionLost = errors.New("triopipe: connection to the dispatcher lost")
)

type taskKey struct{}

// TaskFromContext returns the task a handler's ctx belongs to, for its id and
// metadata: trace id, retry count, and, when the dispatcher sends them, the
// idempotency key and the fencing token (epoch, attempt) to pass on to the systems
// the handler writes to. ok is false outside a handler.
func TaskFromContext(ctx context.Context) (task protocol.Task, ok bool) {
	if r, ok := ctx.Value(taskKey{}).(*running); ok {
		return r.task, true
	}
	return protocol.Task{}, false
}

// UnknownFraction, as the fraction given to [Progress], reports progress without
// saying how much is done: the fraction is sent as null.
const UnknownFraction = -1.0

// Progress tells the dispatcher how far the task of a handler's ctx has come:
// fraction is how much is done, from 0 to 1 ([UnknownFraction] when not known),
// message what is happening ("" for nothing). It sends a TaskResult with status
// Running and a progress member, which the dispatcher passes on in order:
//
//	triopipe.Progress(ctx, 0.4, "stage 2")
//
// It does not wait for the report to be written. It returns an error for a
// fraction outside [0, 1] (other than UnknownFraction) or a ctx that is not a
// handler's, and the cause of ctx once ctx is done (the task was killed, timed
// out or ended: nothing is sent then).
func Progress(ctx context.Context, fraction float64, message string) error {
	r, err := runningTask(ctx, "Progress")
	if err != nil {
		return err
	}
	progress := &protocol.Progress{}
	switch {
	case fraction == UnknownFraction:
	case fraction >= 0 && fraction <= 1: // false for NaN
		progress.Fraction = &fraction
	default:
		return fmt.Errorf("triopipe: Progress: fraction %v is not in [0, 1]", fraction)
	}
	if message != "" {
		progress.Message = &message
	}
	return r.report(progress, 0)
}

// ExtendDeadline asks for more time for the task of a handler's ctx: its deadline
// becomes now + d (d rounded up to a whole millisecond), later or sooner than it
// was. It sends a TaskResult with status Running and extendMs, and moves the
// worker's own clock for the task (ctx.Deadline() and the timeout that cancels ctx
// with [ErrTaskTimeout]) at once. The dispatcher grants it only if the task's type
// allows it, and only up to that type's longest life; if it does not, its Kill at
// the old deadline stops the task. It returns an error for d <= 0 or a ctx that is
// not a handler's, and the cause of ctx once ctx is done.
func ExtendDeadline(ctx context.Context, d time.Duration) error {
	r, err := runningTask(ctx, "ExtendDeadline")
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("triopipe: ExtendDeadline: %v is not a positive duration", d)
	}
	return r.report(nil, d)
}

func runningTask(ctx context.Context, caller string) (*running, error) {
	r, ok := ctx.Value(taskKey{}).(*running)
	if !ok {
		return nil, errors.New("triopipe: " + caller + ": the context is not a task handler's")
	}
	return r, nil
}
