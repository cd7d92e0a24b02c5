package triopipe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// HandlerFunc runs one task: it gets the task's payload as JSON and returns the
// result payload as JSON, or an error that fails the task.
//
// ctx is cancelled when the dispatcher sends Kill for the task, when the task's
// timeoutMs runs out (counted from receipt), on a Shutdown that is not graceful,
// and when the worker stops or loses its connection; [context.Cause] tells which
// ([ErrKilled], [ErrTaskTimeout], [ErrShutdown], [ErrConnectionLost] or the
// cause of the context passed to Run). A handler must return soon after ctx is
// done: its task holds a concurrency slot until it returns.
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
	// ErrShutdown: the dispatcher sent a Shutdown that is not graceful. The task is
	// reported Cancelled with code WORKER_SHUTTING_DOWN.
	ErrShutdown = errors.New("triopipe: worker shut down")
	// ErrConnectionLost: the connection to the dispatcher was lost; no result can
	// be delivered (the dispatcher retries the task elsewhere).
	ErrConnectionLost = errors.New("triopipe: connection to the dispatcher lost")
)

type taskKey struct{}

// TaskFromContext returns the task a handler's ctx belongs to, for its id and
// metadata (trace id, retry count, ...). ok is false outside a handler.
func TaskFromContext(ctx context.Context) (task protocol.Task, ok bool) {
	task, ok = ctx.Value(taskKey{}).(protocol.Task)
	return task, ok
}
