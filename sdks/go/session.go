package triopipe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// transport carries the frames of one connection, whatever its framing.
type transport interface {
	// receive returns the next frame. It returns an error wrapping errInputClosed
	// when no more input will come but sending may still work (stdin at its end).
	receive(ctx context.Context) ([]byte, error)
	// send writes frames in order, within the transport's own time limit.
	send(frames [][]byte) error
}

var errInputClosed = errors.New("input closed")

// sessionEnd is how a session ended.
type sessionEnd struct {
	shutdown bool  // the dispatcher sent Shutdown: do not reconnect
	err      error // why the session ended without finishing a Shutdown
}

// session serves tasks on one established connection. Its state belongs to the
// goroutine of serve; readers, handlers and the writer talk to it over channels.
type session struct {
	cfg        *config
	conn       transport
	log        *slog.Logger
	quietNoise bool // input that is no message at all is logged at debug level

	active       map[protocol.UUID]*running
	throttled    bool // the last Backpressure sent asked to throttle
	shuttingDown bool
	finished     chan outcome // one per started task: never blocks
	out          *outbox
}

// running is a task whose handler has not returned yet.
type running struct {
	task       protocol.Task
	ctx        context.Context // the handler's
	cancel     context.CancelCauseFunc
	release    context.CancelFunc // frees the deadline timer
	receivedAt time.Time
	killReason string
}

// outcome is what a handler returned.
type outcome struct {
	task    *running
	payload json.RawMessage
	err     error
	at      time.Time
}

type received struct {
	frame []byte
	at    time.Time
	err   error
}

// serve runs tasks from conn until the dispatcher's Shutdown has been carried out
// (graceful: in-flight tasks finished and their results flushed; not graceful:
// tasks cancelled and reported), the connection is lost, or ctx is done. In the
// last two cases handlers are cancelled, serve waits for them to return, and
// their results are dropped. serve does not close conn.
func serve(ctx context.Context, cfg *config, conn transport, quietNoise bool) sessionEnd {
	s := &session{
		cfg:        cfg,
		conn:       conn,
		log:        cfg.Logger,
		quietNoise: quietNoise,
		active:     map[protocol.UUID]*running{},
		finished:   make(chan outcome, cfg.MaxConcurrency),
		out:        newOutbox(),
	}
	tasksCtx, stopTasks := context.WithCancelCause(ctx)
	defer stopTasks(nil)
	done := make(chan struct{})
	defer close(done)
	incoming := make(chan received)
	go s.read(incoming, done)
	go s.out.run(conn.send)

	var beats <-chan time.Time
	if cfg.HeartbeatInterval > 0 {
		ticker := time.NewTicker(cfg.HeartbeatInterval)
		defer ticker.Stop()
		beats = ticker.C
	}
	for !s.shuttingDown || len(s.active) > 0 {
		select {
		case <-ctx.Done():
			return s.abort(stopTasks, ctx.Err())
		case in := <-incoming:
			switch {
			case in.err == nil:
				s.handle(tasksCtx, in.frame, in.at)
			case errors.Is(in.err, errInputClosed) && s.shuttingDown:
				incoming = nil // the dispatcher closed its side after Shutdown: drain
			default:
				return s.abort(stopTasks, fmt.Errorf("%w: %w", ErrConnectionLost, in.err))
			}
		case o := <-s.finished:
			s.finish(o)
		case <-beats:
			s.heartbeat()
		case <-s.out.done:
			return s.abort(stopTasks, fmt.Errorf("%w: %w", ErrConnectionLost, s.out.err))
		}
	}
	s.out.close(true)
	select {
	case <-s.out.done:
		if s.out.err != nil {
			s.log.Warn("could not flush results after Shutdown", "error", s.out.err)
		}
	case <-time.After(cfg.ConnectTimeout):
		s.log.Warn("could not flush results after Shutdown in time", "timeout", cfg.ConnectTimeout)
	}
	return sessionEnd{shutdown: true}
}

// abort cancels every handler with cause, waits for them, and drops their results.
func (s *session) abort(stopTasks context.CancelCauseFunc, cause error) sessionEnd {
	s.out.close(false)
	stopTasks(cause)
	for len(s.active) > 0 {
		o := <-s.finished
		delete(s.active, o.task.task.ID)
		o.task.release()
	}
	return sessionEnd{shutdown: s.shuttingDown, err: cause}
}

// read passes frames from the connection to serve until an error, or until done.
func (s *session) read(incoming chan<- received, done <-chan struct{}) {
	for {
		// Not serve's context: the connection's owner ends a read by closing it.
		frame, err := s.conn.receive(context.Background())
		select {
		case incoming <- received{frame, time.Now(), err}:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (s *session) handle(tasksCtx context.Context, frame []byte, at time.Time) {
	message, err := protocol.Decode(frame)
	if err != nil {
		var decodeErr *protocol.DecodeError
		if s.quietNoise && errors.As(err, &decodeErr) && !decodeErr.IsMessage() {
			s.log.Debug("ignoring input that is not a message", "error", err)
		} else {
			s.log.Warn("ignoring a malformed frame from the dispatcher", "error", err)
		}
		return
	}
	switch m := message.(type) {
	case protocol.TaskDispatch:
		s.dispatch(tasksCtx, m.Task, at)
	case protocol.Kill:
		s.kill(m)
	case protocol.Shutdown:
		s.shutdown(m.Graceful)
	case protocol.HeartbeatAck, protocol.WorkerRegistered:
	default:
		s.log.Debug("ignoring a message meant for the dispatcher", "type", m.Type())
	}
}

func (s *session) dispatch(tasksCtx context.Context, task protocol.Task, receivedAt time.Time) {
	if s.active[task.ID] != nil {
		s.log.Warn("ignoring a second dispatch of a running task", "task", task.ID)
		return
	}
	handler := s.cfg.handlers[task.TaskType]
	switch {
	case s.shuttingDown:
		s.reject(task, protocol.CodeWorkerShuttingDown, "the worker is shutting down", true)
	case handler == nil:
		s.reject(task, protocol.CodeUnknownTaskType, fmt.Sprintf("no handler for task type %q", task.TaskType), false)
	case len(s.active) >= s.cfg.MaxConcurrency:
		s.reject(task, protocol.CodeWorkerSaturated, fmt.Sprintf("the worker is running %d tasks, its maximum", len(s.active)), true)
	default:
		s.start(tasksCtx, task, handler, receivedAt)
	}
}

func (s *session) start(tasksCtx context.Context, task protocol.Task, handler HandlerFunc, receivedAt time.Time) {
	r := &running{task: task, receivedAt: receivedAt}
	cancellable, cancel := context.WithCancelCause(context.WithValue(tasksCtx, taskKey{}, task))
	deadline := receivedAt.Add(task.Metadata.Timeout())
	r.ctx, r.release = context.WithDeadlineCause(cancellable, deadline, ErrTaskTimeout)
	r.cancel = cancel
	s.active[task.ID] = r
	go func() {
		payload, err := callHandler(r.ctx, handler, task.Payload, s.log)
		s.finished <- outcome{r, payload, err, time.Now()}
	}()
	s.updateBackpressure()
}

// callHandler runs h, turning a panic into an error.
func callHandler(ctx context.Context, h HandlerFunc, payload json.RawMessage, log *slog.Logger) (result json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, payload)
}

func (s *session) kill(kill protocol.Kill) {
	r := s.active[kill.TaskID]
	if r == nil || r.ctx.Err() != nil {
		s.log.Debug("ignoring Kill for a task that is not running", "task", kill.TaskID)
		return
	}
	r.killReason = kill.Reason
	if r.killReason == "" {
		r.killReason = "killed by the dispatcher"
	}
	r.cancel(ErrKilled)
}

func (s *session) shutdown(graceful bool) {
	s.shuttingDown = true
	if !graceful {
		for _, r := range s.active {
			r.cancel(ErrShutdown)
		}
	}
	s.log.Info("the dispatcher asked to shut down", "graceful", graceful, "tasks in flight", len(s.active))
}

func (s *session) finish(o outcome) {
	r := o.task
	delete(s.active, r.task.ID)
	result := s.result(o) // before release: it reads how r.ctx ended
	r.release()
	s.sendResult(result)
	s.updateBackpressure()
}

// result is the TaskResult for what a handler returned, given how its context ended.
func (s *session) result(o outcome) protocol.TaskResult {
	r := o.task
	result := s.newResult(r.task, protocol.StatusCancelled, o.at.Sub(r.receivedAt))
	cause := context.Cause(r.ctx)
	switch {
	case errors.Is(cause, ErrKilled):
		result.Error = &protocol.TaskError{Code: protocol.CodeKilled, Message: r.killReason}
	case errors.Is(cause, ErrShutdown):
		result.Error = &protocol.TaskError{Code: protocol.CodeWorkerShuttingDown,
			Message: "the worker was shut down (not gracefully)", Retryable: true}
	case errors.Is(cause, ErrTaskTimeout):
		result.Status = protocol.StatusTimedOut
		result.Error = &protocol.TaskError{Code: protocol.CodeTimeout,
			Message: fmt.Sprintf("task exceeded its timeout of %d ms", r.task.Metadata.TimeoutMs), Retryable: true}
	case o.err != nil:
		result.Status = protocol.StatusFailed
		result.Error = s.failure(r.task, o.err)
	default:
		result.Status = protocol.StatusCompleted
		result.Payload = o.payload
	}
	return result
}

func (s *session) failure(task protocol.Task, err error) *protocol.TaskError {
	var failure *TaskFailure
	if errors.As(err, &failure) {
		s.log.Info("task failed", "task", task.ID, "type", task.TaskType, "code", failure.Code, "error", failure.Message)
		return &protocol.TaskError{Code: failure.Code, Message: failure.Message, Retryable: failure.Retryable}
	}
	s.log.Warn("task failed", "task", task.ID, "type", task.TaskType, "error", err)
	return &protocol.TaskError{Code: protocol.CodeHandlerError, Message: err.Error(), Retryable: true}
}

func (s *session) newResult(task protocol.Task, status protocol.TaskStatus, elapsed time.Duration) protocol.TaskResult {
	return protocol.TaskResult{
		TaskID:     task.ID,
		Status:     status,
		DurationMs: max(0, elapsed.Round(time.Millisecond).Milliseconds()),
		WorkerID:   s.cfg.WorkerID,
	}
}

func (s *session) reject(task protocol.Task, code, message string, retryable bool) {
	s.log.Info("rejecting a task", "task", task.ID, "type", task.TaskType, "code", code)
	result := s.newResult(task, protocol.StatusFailed, 0)
	result.Error = &protocol.TaskError{Code: code, Message: message, Retryable: retryable}
	s.sendResult(result)
}

func (s *session) sendResult(result protocol.TaskResult) {
	frame, err := protocol.Encode(protocol.TaskResultMessage{Result: result})
	if err != nil { // only a handler's payload can be at fault
		s.log.Warn("a handler returned a result that is not JSON", "task", result.TaskID, "error", err)
		result.Status, result.Payload = protocol.StatusFailed, nil
		result.Error = &protocol.TaskError{Code: protocol.CodeParseError, Message: err.Error()}
		frame, _ = protocol.Encode(protocol.TaskResultMessage{Result: result})
	}
	s.out.put(frame)
}

// updateBackpressure sends Backpressure when the worker has just filled up or has
// a free slot again.
func (s *session) updateBackpressure() {
	full := len(s.active) >= s.cfg.MaxConcurrency
	if full == s.throttled {
		return
	}
	s.throttled = full
	s.send(protocol.Backpressure{Signal: protocol.BackpressureSignal{
		WorkerID:       s.cfg.WorkerID,
		CurrentLoad:    float64(len(s.active)) / float64(s.cfg.MaxConcurrency),
		ShouldThrottle: full,
	}})
}

func (s *session) heartbeat() {
	s.send(protocol.Heartbeat{Payload: protocol.HeartbeatPayload{
		WorkerID:      s.cfg.WorkerID,
		ActiveTasks:   int64(len(s.active)),
		Capacity:      int64(s.cfg.MaxConcurrency),
		UptimeSeconds: int64(time.Since(s.cfg.startedAt) / time.Second),
	}})
}

// send queues a message without a payload (it always encodes).
func (s *session) send(m protocol.Message) {
	frame, _ := protocol.Encode(m)
	s.out.put(frame)
}

// outbox queues frames for the one goroutine that writes to the connection, which
// sends whatever has accumulated in one go.
type outbox struct {
	mu     sync.Mutex
	frames [][]byte
	closed bool
	wake   chan struct{} // capacity 1: "look at frames and closed"
	done   chan struct{} // closed when the writer has stopped
	err    error         // why the writer stopped early; read after done
}

func newOutbox() *outbox {
	return &outbox{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (o *outbox) put(frame []byte) {
	o.mu.Lock()
	o.frames = append(o.frames, frame)
	o.mu.Unlock()
	o.signal()
}

// close stops the writer once it has written what is queued (flush) or at once.
func (o *outbox) close(flush bool) {
	o.mu.Lock()
	o.closed = true
	if !flush {
		o.frames = nil
	}
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) run(send func([][]byte) error) {
	defer close(o.done)
	for range o.wake {
		o.mu.Lock()
		frames, closed := o.frames, o.closed
		o.frames = nil
		o.mu.Unlock()
		if len(frames) > 0 {
			if err := send(frames); err != nil {
				o.err = err
				return
			}
		}
		if closed {
			return
		}
	}
}
