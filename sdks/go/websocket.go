package triopipe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// RunWebSocket serves the worker's handlers to the dispatcher at rawURL (ws:// or
// wss://). It connects, registers with Options.WorkerID and the task types that have
// a handler, and once the dispatcher accepts the registration runs each dispatched
// task in its own goroutine, sends a heartbeat every Options.HeartbeatInterval and
// Backpressure when the worker fills up or frees up. WorkerRegistered accepts the
// registration; so does a TaskDispatch that comes first (a rust-pipe 0.1
// dispatcher never answers: it dispatches at once), and so does silence for
// Options.ConnectTimeout (an idle rust-pipe dispatcher sends nothing at all; a
// dispatcher that refuses closes the connection), after which the first heartbeat
// goes at once.
//
// Options.Token (default: TRIO_PIPE_TOKEN) goes in every opening handshake as
// "Authorization: Bearer <token>", and Options.TLSConfig verifies a wss://
// dispatcher (and holds the client certificate for mutual TLS). A handshake that
// the dispatcher refuses with HTTP 401 or 403 ends the run at once with a
// [HandshakeRefusedError], and a close with 1008 before the registration is
// accepted with a [RegistrationRefusedError]: neither is retried. A failed TLS
// handshake is reported as one ("TLS handshake with HOST:PORT failed: ...") and
// retried.
//
// When the connection cannot be made or is lost without Shutdown, handlers still running are
// cancelled (the dispatcher retries their tasks) and the worker reconnects after a
// random, growing delay (Options.BackoffInitial, BackoffMax), with the same worker
// id; after Options.GiveUpAfter failures in a row it returns an error instead.
//
// On SIGTERM or SIGINT it drains (see [Worker.Drain]), with Options.DrainTimeout as
// the grace, and a second signal cancels the tasks left at once; Options.NoSignalHandler
// turns this off.
//
// RunWebSocket returns nil after the dispatcher's Shutdown or the worker's drain,
// once the tasks in flight have finished or been cancelled, their results sent and
// the connection closed with code 1000 ([ErrInterrupted] after a drain that SIGINT
// began). It returns ctx.Err() when ctx is done, after cancelling the handlers and
// waiting for them to return, and an error wrapping [ErrInvalidOptions] before any
// I/O if the URL or the options are unusable.
func (w *Worker) RunWebSocket(ctx context.Context, rawURL string) error {
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("%w: expected a ws:// or wss:// URL with a host, got %q", ErrInvalidOptions, rawURL)
	}
	cfg, err := w.config(5 * time.Second)
	if err != nil {
		return err
	}
	if cfg.TLSConfig != nil && !strings.HasPrefix(rawURL, "wss://") {
		return fmt.Errorf("%w: TLSConfig is for wss:// URLs, got %q", ErrInvalidOptions, rawURL)
	}
	setDefault(&cfg.Token, os.Getenv(tokenVariable)) // a stdio worker has no handshake, no token
	if problem := checkToken(cfg.Token); problem != "" {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, problem)
	}
	defer w.handleSignals(cfg)()
	log := cfg.Logger.With("worker", cfg.WorkerID)
	failures := 0
	for {
		end, registered := cfg.connection(ctx, rawURL, log, w.drain)
		begun, _, drainBegins := w.drain.state()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case fatal(end.err):
			return fmt.Errorf("triopipe: worker %s: %w", cfg.WorkerID, end.err)
		case end.shutdown || begun:
			log.Info("stopped", "drained", begun)
			return w.drain.stopped()
		case registered:
			failures = 0
		}
		failures++
		if cfg.GiveUpAfter > 0 && failures >= cfg.GiveUpAfter {
			return fmt.Errorf("triopipe: worker %s gave up after %d failed connections: %w", cfg.WorkerID, failures, end.err)
		}
		delay := cfg.backoff(failures - 1)
		log.Warn("reconnecting", "in", delay, "error", end.err)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-drainBegins:
			timer.Stop()
			log.Info("stopped", "drained", true)
			return w.drain.stopped()
		case <-timer.C:
		}
	}
}

// connection serves one WebSocket connection, from dialling to closing. A drain
// that begins before the registration is accepted ends it at once.
func (c *config) connection(ctx context.Context, rawURL string, log *slog.Logger, drain *drainState) (end sessionEnd, registered bool) {
	connectCtx, cancel := drain.untilBegun(ctx)
	defer cancel()
	dialCtx, cancelDial := context.WithTimeout(connectCtx, c.ConnectTimeout)
	defer cancelDial()
	conn, resp, err := websocket.Dial(dialCtx, rawURL, c.dialOptions())
	if err != nil {
		return sessionEnd{err: dialError(err, resp, address(rawURL))}, false
	}
	conn.SetReadLimit(protocol.MaxFrameSize)
	t := newWSTransport(conn, c.ConnectTimeout, log)
	defer t.stopReading()
	start, err := c.register(connectCtx, t, log)
	if err != nil {
		_ = conn.CloseNow()
		return sessionEnd{err: err}, false
	}
	end = serve(ctx, c, t, false, drain, start)
	switch {
	case end.shutdown:
		_ = conn.Close(websocket.StatusNormalClosure, "")
	case ctx.Err() != nil:
		_ = conn.Close(websocket.StatusGoingAway, "worker stopping")
	default:
		_ = conn.CloseNow()
	}
	return end, true
}

// address is the host:port that rawURL (a checked ws:// or wss:// URL) names.
func address(rawURL string) string {
	u, _ := url.Parse(rawURL)
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "wss" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// register sends WorkerRegister and waits, for at most ConnectTimeout, for the
// dispatcher to accept it: WorkerRegistered, or a TaskDispatch that comes first (it
// is served first), or no message at all until the timeout. Anything else before
// that is logged and skipped. A close with 1008 before it is a
// [RegistrationRefusedError].
func (c *config) register(ctx context.Context, t *wsTransport, log *slog.Logger) (sessionStart, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	tasks := c.supportedTasks()
	limits := map[string]int64{}
	for taskType, limit := range c.MaxConcurrencyByType {
		limits[taskType] = int64(limit)
	}
	frame, _ := protocol.Encode(protocol.WorkerRegister{Registration: protocol.WorkerRegistration{
		WorkerID:             c.WorkerID,
		SupportedTasks:       tasks,
		MaxConcurrency:       int64(c.MaxConcurrency),
		Language:             Language,
		Tags:                 c.Tags,
		MaxConcurrencyByType: limits,
	}})
	if err := t.send([][]byte{frame}); err != nil {
		return sessionStart{}, err
	}
	for {
		frame, err := t.receive(ctx)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			log.Debug("no answer to WorkerRegister in time (as from an idle rust-pipe 0.1 dispatcher): "+
				"the registration is taken as accepted", "timeout", c.ConnectTimeout)
			log.Info("registered", "tasks", tasks)
			return sessionStart{beatAtOnce: true}, nil
		}
		var closed websocket.CloseError
		if errors.As(err, &closed) && closed.Code == websocket.StatusPolicyViolation {
			reason := closed.Reason
			if reason == "" {
				reason = "no reason given"
			}
			return sessionStart{}, &RegistrationRefusedError{Reason: reason}
		}
		if err != nil {
			return sessionStart{}, err
		}
		message, err := protocol.Decode(frame)
		switch m := message.(type) {
		case nil:
			log.Warn("ignoring a malformed frame from the dispatcher", "error", err)
		case protocol.WorkerRegistered:
			if m.WorkerID != c.WorkerID {
				log.Warn("the dispatcher acknowledged another worker id", "acknowledged", m.WorkerID)
			}
			log.Info("registered", "tasks", tasks)
			return sessionStart{}, nil
		case protocol.TaskDispatch:
			log.Debug("a task came before WorkerRegistered (as from rust-pipe 0.1): the registration is accepted")
			log.Info("registered", "tasks", tasks)
			return sessionStart{early: []received{{frame: frame, at: time.Now()}}}, nil
		default:
			log.Warn("ignoring a message received before the registration was accepted", "type", m.Type())
		}
	}
}

// wsTransport is one message per WebSocket text frame. One goroutine reads the
// connection, so that a receive whose context ends (the wait for the answer to
// WorkerRegister) leaves the connection open: a Read of the websocket package
// whose context ends closes it.
type wsTransport struct {
	conn         *websocket.Conn
	writeTimeout time.Duration
	log          *slog.Logger
	frames       chan received // from readFrames; closed after its last, an error
	done         chan struct{} // closed by stopReading
	lastErr      error         // what ended reading, once frames is closed
}

func newWSTransport(conn *websocket.Conn, writeTimeout time.Duration, log *slog.Logger) *wsTransport {
	t := &wsTransport{conn: conn, writeTimeout: writeTimeout, log: log,
		frames: make(chan received), done: make(chan struct{})}
	go t.readFrames()
	return t
}

func (t *wsTransport) readFrames() {
	defer close(t.frames)
	for {
		// Not a caller's context: the connection's owner ends a read by closing it.
		kind, data, err := t.conn.Read(context.Background())
		if err == nil && kind != websocket.MessageText {
			t.log.Warn("ignoring a binary frame from the dispatcher")
			continue
		}
		if err != nil {
			t.lastErr = err
			return
		}
		select {
		case t.frames <- received{frame: data, at: time.Now()}:
		case <-t.done:
			return
		}
	}
}

// stopReading lets the reading goroutine end once the connection is closed.
func (t *wsTransport) stopReading() { close(t.done) }

func (t *wsTransport) receive(ctx context.Context) ([]byte, error) {
	select {
	case in, ok := <-t.frames:
		if !ok {
			return nil, t.lastErr
		}
		return in.frame, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (t *wsTransport) send(frames [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.writeTimeout)
	defer cancel()
	for _, frame := range frames {
		if err := t.conn.Write(ctx, websocket.MessageText, frame); err != nil {
			return err
		}
	}
	return nil
}
