package triopipe

import (
	"context"
	"sync"
	"time"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// running is a task whose handler has started and whose result is not sent yet.
// The session's goroutine owns it; the handler's goroutine reaches it through its
// context, for Progress and ExtendDeadline, and touches only what mu guards.
type running struct {
	task       protocol.Task
	ctx        context.Context // the handler's: a *taskContext
	cancel     context.CancelCauseFunc
	receivedAt time.Time
	killReason string
	session    *session // for its worker id and its outbox, which never change

	mu       sync.Mutex
	deadline time.Time   // the local timeoutMs clock, counted from receipt
	timer    *time.Timer // cancels ctx with ErrTaskTimeout at deadline
}

// newRunning prepares task for its handler: a context under tasksCtx that is
// cancelled at the task's deadline (at once when it has passed).
func (s *session) newRunning(tasksCtx context.Context, task protocol.Task, receivedAt time.Time) *running {
	r := &running{task: task, receivedAt: receivedAt, session: s, deadline: receivedAt.Add(task.Metadata.Timeout())}
	cancellable, cancel := context.WithCancelCause(tasksCtx)
	r.ctx, r.cancel = &taskContext{Context: cancellable, task: r}, cancel
	timeout := func() { cancel(ErrTaskTimeout) }
	wait := time.Until(r.deadline)
	r.timer = time.AfterFunc(wait, timeout)
	if wait <= 0 {
		timeout() // before the handler starts, not whenever the timer's goroutine runs
	}
	return r
}

// end cancels the task's context with cause, unless it is done already, and
// stops its clock: no report of it can be sent after this.
func (r *running) end(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel(cause)
	r.timer.Stop()
}

// report sends a Running TaskResult for the task, with progress and, when extend is
// positive, an extension of its deadline to now + extend, which also moves the
// local clock. It fails with the context's cause once the task's context is done:
// after a Kill, its timeout or its end, nothing more is reported.
func (r *running) report(progress *protocol.Progress, extend time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return context.Cause(r.ctx)
	}
	now := time.Now()
	result := r.session.newResult(r.task, protocol.StatusRunning, now.Sub(r.receivedAt))
	result.Progress = progress
	if extend > 0 {
		result.ExtendMs = int64((extend + time.Millisecond - 1) / time.Millisecond)
		extend = time.Duration(result.ExtendMs) * time.Millisecond
		r.deadline = now.Add(extend)
		r.timer.Reset(extend)
	}
	r.session.sendResult(result)
	return nil
}

// taskContext is a handler's context. Its deadline is the task's, which
// ExtendDeadline moves; it carries the task for TaskFromContext.
type taskContext struct {
	context.Context // cancelled on Kill, timeout, shutdown, ... (see HandlerFunc)
	task            *running
}

func (c *taskContext) Deadline() (time.Time, bool) {
	c.task.mu.Lock()
	deadline := c.task.deadline
	c.task.mu.Unlock()
	if outer, ok := c.Context.Deadline(); ok && outer.Before(deadline) {
		return outer, true
	}
	return deadline, true
}

func (c *taskContext) Value(key any) any {
	if key == (taskKey{}) {
		return c.task
	}
	return c.Context.Value(key)
}
