// Command conformance-worker is the worker that the trio_pipe conformance kit runs
// against this SDK. It serves three task types:
//
//   - echo: returns its payload unchanged;
//   - sleep: {"ms": N} waits N milliseconds, cancellably, and returns {"sleptMs": N};
//   - fail: {"message": TEXT} fails with HANDLER_ERROR and TEXT as its message.
//
// With a ws:// or wss:// URL as its last argument or in TRIO_PIPE_URL it connects
// to that dispatcher; without one it serves on stdin and stdout. It reads
// TRIO_PIPE_WORKER_ID, TRIO_PIPE_MAX_CONCURRENCY and TRIO_PIPE_HEARTBEAT_MS, and the
// SDK reads TRIO_PIPE_DRAIN_TIMEOUT_MS and TRIO_PIPE_TOKEN; for a wss:// URL it
// trusts TRIO_PIPE_CAFILE and presents TRIO_PIPE_CERTFILE and TRIO_PIPE_KEYFILE. On
// SIGTERM or SIGINT it drains and exits 0 (130 after SIGINT); a refused handshake or
// registration ends it with status 1 and the reason on stderr.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
)

type sleepTask struct {
	Ms int64 `json:"ms"`
}

type sleepResult struct {
	SleptMs int64 `json:"sleptMs"`
}

type failTask struct {
	Message string `json:"message"`
}

func echo(_ context.Context, payload json.RawMessage) (json.RawMessage, error) {
	return payload, nil
}

func sleep(ctx context.Context, task sleepTask) (sleepResult, error) {
	timer := time.NewTimer(time.Duration(task.Ms) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
		return sleepResult{SleptMs: task.Ms}, nil
	case <-ctx.Done():
		return sleepResult{}, context.Cause(ctx)
	}
}

func fail(_ context.Context, task failTask) (struct{}, error) {
	return struct{}{}, errors.New(task.Message)
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	triopipe.Exit(run())
}

func run() error {
	maxConcurrency, err := envInt("TRIO_PIPE_MAX_CONCURRENCY")
	if err != nil {
		return err
	}
	heartbeatMs, err := envInt("TRIO_PIPE_HEARTBEAT_MS")
	if err != nil {
		return err
	}
	url := dispatcherURL()
	var tlsConfig *tls.Config // the SDK takes the token from TRIO_PIPE_TOKEN itself
	if strings.HasPrefix(url, "wss://") {
		tlsConfig, err = triopipe.LoadTLSConfig(os.Getenv("TRIO_PIPE_CAFILE"), os.Getenv("TRIO_PIPE_CERTFILE"), os.Getenv("TRIO_PIPE_KEYFILE"))
		if err != nil {
			return err
		}
	}
	w := triopipe.NewWorker(triopipe.Options{
		WorkerID:          os.Getenv("TRIO_PIPE_WORKER_ID"),
		MaxConcurrency:    maxConcurrency,
		HeartbeatInterval: time.Duration(heartbeatMs) * time.Millisecond,
		TLSConfig:         tlsConfig,
	})
	w.Handle("echo", echo)
	w.Handle("sleep", triopipe.Typed(sleep))
	w.Handle("fail", triopipe.Typed(fail))

	ctx := context.Background()
	if url != "" {
		return w.RunWebSocket(ctx, url)
	}
	return w.RunStdio(ctx, os.Stdin, os.Stdout)
}

// dispatcherURL is the last argument if it is a WebSocket URL, else TRIO_PIPE_URL.
func dispatcherURL() string {
	if n := len(os.Args); n > 1 {
		last := os.Args[n-1]
		if strings.HasPrefix(last, "ws://") || strings.HasPrefix(last, "wss://") {
			return last
		}
	}
	return os.Getenv("TRIO_PIPE_URL")
}

// envInt reads a variable holding a whole number; unset or empty gives 0 (the default).
func envInt(name string) (int, error) {
	value := os.Getenv(name)
	if value == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(value)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}
