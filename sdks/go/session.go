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
	shutdown bool  // the dispatcher sent Shutdown or the worker drained: do not reconnect
	err      error // why the session ended without finishing a Shutdown or drain
}

// session serves tasks on one established connection. Its state belongs to the
// goroutine of serve; readers, handlers and the writer talk to it over channels.
type session struct {
	cfg        *config
	conn       transport
	log        *slog.Logger
	quietNoise bool // input that is no message at all is logged at debug level
	drain      *drainState

	active       map[protocol.UUID]*running
	activeByType map[string]int
	throttled    bool // the last Backpressure sent asked to throttle
	shuttingDown bool // the dispatcher sent Shutdown
	draining     bool // the worker's drain has begun
	drainChanged <-chan struct{}
	drainTimer   *time.Timer  // fires at the drain's deadline; nil before the drain
	finished     chan outcome // one per started task: never blocks
	out          *outbox
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

// sessionStart is what the registration leaves for serve to do first.
type sessionStart struct {
	early      []received // tasks the dispatcher sent before accepting the registration
	beatAtOnce bool       // the dispatcher answered nothing: say at once that we live
}

// serve runs tasks from conn until the dispatcher's Shutdown or the worker's drain
// has been carried out (in-flight tasks finished, or cancelled and reported, and
// their results flushed), the connection is lost, or ctx is done. In the last two
// cases handlers are cancelled, serve waits for them to return (during a drain, no
// longer than its deadline), and their results are dropped. serve does not close
// conn.
func serve(ctx context.Context, cfg *config, conn transport, quietNoise bool, drain *drainState, start sessionStart) sessionEnd {
	s := &session{
		cfg:          cfg,
		conn:         conn,
		log:          cfg.Logger,
		quietNoise:   quietNoise,
		drain:        drain,
		active:       map[protocol.UUID]*running{},
		activeByType: map[string]int{},
		finished:     make(chan outcome, cfg.MaxConcurrency),
		out:          newOutbox(),
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
	s.followDrain()
	defer s.stopDrainTimer()
	if start.beatAtOnce && beats != nil {
		s.heartbeat()
	}
	for _, in := range start.early {
		s.handle(tasksCtx, in.frame, in.at)
	}
	for !s.stopping() || len(s.active) > 0 {
		select {
		case <-ctx.Done():
			return s.abort(stopTasks, ctx.Err())
		case in := <-incoming:
			switch {
			case in.err == nil:
				s.handle(tasksCtx, in.frame, in.at)
			case errors.Is(in.err, errInputClosed) && s.stopping():
				incoming = nil // the dispatcher closed its side: finish the tasks in flight
			default:
				return s.abort(stopTasks, fmt.Errorf("%w: %w", ErrConnectionLost, in.err))
			}
		case o := <-s.finished:
			s.finish(o)
		case <-beats:
			s.heartbeat()
		case <-s.out.done:
			return s.abort(stopTasks, fmt.Errorf("%w: %w", ErrConnectionLost, s.out.err))
		case <-s.drainChanged:
			s.followDrain()
		case <-s.drainDeadline():
			s.cancelRemaining()
		}
	}
	s.out.close(true)
	select {
	case <-s.out.done:
		if s.out.err != nil {
			s.log.Warn("could not flush the last results", "error", s.out.err)
		}
	case <-time.After(cfg.ConnectTimeout):
		s.log.Warn("could not flush the last results in time", "timeout", cfg.ConnectTimeout)
	}
	return sessionEnd{shutdown: true}
}

// abort cancels every handler with cause, waits for them (during a drain, until
// its deadline at most), and drops their results.
func (s *session) abort(stopTasks context.CancelCauseFunc, cause error) sessionEnd {
	s.out.close(false)
	stopTasks(cause)
	for len(s.active) > 0 {
		select {
		case o := <-s.finished:
			s.remove(o.task, nil)
		case <-s.drainChanged:
			s.followDrain()
		case <-s.drainDeadline():
			for _, r := range s.active {
				s.remove(r, ErrShutdown)
			}
		}
	}
	return sessionEnd{shutdown: s.stopping(), err: cause}
}

// stopping reports whether the session takes no new task and ends once the tasks
// in flight are done.
func (s *session) stopping() bool {
	return s.shuttingDown || s.draining
}

// followDrain catches up with the worker's drain: once it has begun, the session
// tells the dispatcher (once), takes no new task, and keeps a timer for its
// deadline.
func (s *session) followDrain() {
	begun, deadline, changed := s.drain.state()
	s.drainChanged = changed
	if !begun {
		return
	}
	wait := time.Until(deadline)
	if !s.draining {
		s.draining = true
		attributes := []any{"tasks in flight", len(s.active), "timeout", wait.Round(time.Millisecond)}
		if sig := s.drain.beganWith(); sig != nil {
			attributes = append(attributes, "signal", sig.String(), "note", "another signal cancels the tasks left")
		}
		s.log.Info("draining: taking no new task", attributes...)
		s.send(protocol.Backpressure{Signal: protocol.BackpressureSignal{
			WorkerID:       s.cfg.WorkerID,
			CurrentLoad:    s.load(),
			ShouldThrottle: true,
			Draining:       true,
		}})
	}
	if s.drainTimer == nil {
		s.drainTimer = time.NewTimer(wait)
	} else {
		s.drainTimer.Reset(wait)
	}
}

// drainDeadline is a channel that receives when the drain's deadline passes (nil,
// never, before the drain).
func (s *session) drainDeadline() <-chan time.Time {
	if s.drainTimer == nil {
		return nil
	}
	return s.drainTimer.C
}

func (s *session) stopDrainTimer() {
	if s.drainTimer != nil {
		s.drainTimer.Stop()
	}
}

// cancelRemaining ends a drain whose deadline has passed (or that a second signal
// cut short): the tasks still running are cancelled and reported at once, without
// waiting for their handlers. The session ends next, so their handlers' outcomes
// are never read.
func (s *session) cancelRemaining() {
	if len(s.active) > 0 {
		s.log.Warn("cancelling the tasks still running", "tasks", len(s.active))
	}
	now := time.Now()
	for _, r := range s.active {
		s.remove(r, ErrShutdown)
		result := s.newResult(r.task, protocol.StatusCancelled, now.Sub(r.receivedAt))
		result.Error = &protocol.TaskError{Code: protocol.CodeWorkerShuttingDown,
			Message: "the worker is shutting down and the task did not finish in time", Retryable: true}
		s.sendResult(result)
	}
}

// remove forgets a task: its context is cancelled with cause unless it is done
// already, and nothing more is reported for it.
func (s *session) remove(r *running, cause error) {
	delete(s.active, r.task.ID)
	s.activeByType[r.task.TaskType]--
	r.end(cause)
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
	limit, limited := s.cfg.MaxConcurrencyByType[task.TaskType]
	switch {
	case s.stopping():
		s.reject(task, protocol.CodeWorkerShuttingDown, "the worker is shutting down", true)
	case handler == nil:
		s.reject(task, protocol.CodeUnknownTaskType, fmt.Sprintf("no handler for task type %q", task.TaskType), false)
	case len(s.active) >= s.cfg.MaxConcurrency:
		s.reject(task, protocol.CodeWorkerSaturated, fmt.Sprintf("the worker is running %d tasks, its maximum", len(s.active)), true)
	case limited && s.activeByType[task.TaskType] >= limit:
		s.reject(task, protocol.CodeWorkerSaturated,
			fmt.Sprintf("the worker is running %d tasks of type %q, its maximum for that type", limit, task.TaskType), true)
	default:
		s.start(tasksCtx, task, handler, receivedAt)
	}
}

func (s *session) start(tasksCtx context.Context, task protocol.Task, handler HandlerFunc, receivedAt time.Time) {
	r := s.newRunning(tasksCtx, task, receivedAt)
	s.active[task.ID] = r
	s.activeByType[task.TaskType]++
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
	result := s.result(o) // before remove: it reads how r.ctx ended
	s.remove(r, nil)
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
// a free slot again; nothing once it drains (the draining signal stays).
func (s *session) updateBackpressure() {
	full := len(s.active) >= s.cfg.MaxConcurrency
	if full == s.throttled || s.draining {
		return
	}
	s.throttled = full
	s.send(protocol.Backpressure{Signal: protocol.BackpressureSignal{
		WorkerID:       s.cfg.WorkerID,
		CurrentLoad:    s.load(),
		ShouldThrottle: full,
	}})
}

func (s *session) load() float64 {
	return float64(len(s.active)) / float64(s.cfg.MaxConcurrency)
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
