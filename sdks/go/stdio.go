package triopipe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// RunStdio serves the worker's handlers to the dispatcher that spawned this
// process: it reads one JSON message per line from stdin and writes one per line to
// stdout (usually os.Stdin and os.Stdout). The dispatcher registers a spawned
// worker itself, so nothing is written before the first result; heartbeats are
// sent only if Options.HeartbeatInterval is set. Stdout must carry nothing but
// these lines: log to stderr.
//
// Lines that are not JSON objects with a "type" are ignored (logged at debug
// level); malformed messages are logged and skipped. A line longer than
// [protocol.MaxFrameSize] is skipped.
//
// On SIGTERM or SIGINT it drains (see [Worker.Drain]), with Options.DrainTimeout as
// the grace, and a second signal cancels the tasks left at once; Options.NoSignalHandler
// turns this off.
//
// RunStdio returns nil after Shutdown or a drain (once the tasks in flight have
// finished, or been cancelled and reported, and their results are written, even if
// stdin ends meanwhile; [ErrInterrupted] after a drain that SIGINT began), and when
// stdin ends without either; handlers still running then are cancelled and their
// results dropped. It returns an error if writing to stdout fails, ctx.Err() when
// ctx is done, and an error wrapping [ErrInvalidOptions] before any I/O.
//
// A Read on stdin that is blocked when RunStdio returns is left to finish on its
// own; whatever it reads is dropped.
func (w *Worker) RunStdio(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	cfg, err := w.config(0)
	if err != nil {
		return err
	}
	defer w.handleSignals(cfg)()
	cfg.Logger.Info("serving on stdin/stdout", "worker", cfg.WorkerID, "tasks", cfg.supportedTasks())
	end := serve(ctx, cfg, &stdioTransport{in: bufio.NewReaderSize(stdin, 64<<10), out: stdout, log: cfg.Logger}, true, w.drain, sessionStart{})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case end.shutdown:
		begun, _, _ := w.drain.state()
		cfg.Logger.Info("stopped", "worker", cfg.WorkerID, "drained", begun)
		return w.drain.stopped()
	case errors.Is(end.err, errInputClosed):
		cfg.Logger.Info("stdin closed", "worker", cfg.WorkerID, "reason", end.err)
		return nil
	default:
		return end.err
	}
}

// stdioTransport is newline-delimited JSON over a pair of byte streams.
type stdioTransport struct {
	in  *bufio.Reader
	out io.Writer
	log *slog.Logger
}

func (t *stdioTransport) receive(context.Context) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := t.in.ReadSlice('\n')
		if !tooLong && len(line)+len(chunk) > protocol.MaxFrameSize+1 { // +1: the newline
			tooLong, line = true, nil
		}
		if !tooLong {
			line = append(line, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
		case err == nil && tooLong:
			t.log.Warn("skipping a line on stdin longer than the frame limit", "limit", protocol.MaxFrameSize)
			tooLong = false
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil // the last line lacks its newline; the next read ends
		default:
			return nil, fmt.Errorf("%w: reading stdin: %w", errInputClosed, err)
		}
	}
}

func (t *stdioTransport) send(frames [][]byte) error {
	var buf []byte
	for _, frame := range frames {
		buf = append(append(buf, frame...), '\n')
	}
	if _, err := t.out.Write(buf); err != nil {
		return fmt.Errorf("writing to stdout: %w", err)
	}
	return nil
}
