// Command peer-worker is the smallest WebSocket worker that trio_pipe's dispatcher
// and rust-pipe's both serve, so that benchmarks/peers.py can measure the two
// dispatchers against the same worker process in the same run.
//
// It registers for the task types "noop" and "echo" and answers each TaskDispatch
// at once, on the goroutine that read it, with a Completed result carrying the task's
// payload back. It sends a Heartbeat every TRIO_PIPE_HEARTBEAT_MS milliseconds
// (default 5000), ignores every other message but Shutdown, after which it closes the
// connection (code 1000) and exits 0; a lost connection exits 1. It does not
// reconnect, has no handler goroutines, deadlines or Kill: those belong to an SDK
// (sdks/go), and here they would be a cost measured into both dispatchers' figures.
//
//	peer-worker ws://127.0.0.1:9876
//
// It reads TRIO_PIPE_URL (when no URL is given), TRIO_PIPE_WORKER_ID (default
// "peer-worker") and TRIO_PIPE_MAX_CONCURRENCY (default 256), as the conformance
// kit's workers do.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// maxFrame bounds one message from the dispatcher, as the SDKs do.
const maxFrame = 16 << 20

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "peer-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	url := os.Getenv("TRIO_PIPE_URL")
	if len(os.Args) > 1 {
		url = os.Args[len(os.Args)-1]
	}
	if url == "" {
		return fmt.Errorf("usage: peer-worker ws://HOST:PORT (or TRIO_PIPE_URL)")
	}
	workerID := envOr("TRIO_PIPE_WORKER_ID", "peer-worker")
	capacity, err := strconv.Atoi(envOr("TRIO_PIPE_MAX_CONCURRENCY", "256"))
	if err != nil || capacity < 1 {
		return fmt.Errorf("TRIO_PIPE_MAX_CONCURRENCY: expected an integer >= 1")
	}
	heartbeatMs, err := strconv.Atoi(envOr("TRIO_PIPE_HEARTBEAT_MS", "5000"))
	if err != nil || heartbeatMs < 1 {
		return fmt.Errorf("TRIO_PIPE_HEARTBEAT_MS: expected an integer >= 1")
	}

	ctx := context.Background()
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, _, err := websocket.Dial(dialCtx, url, nil)
	cancel()
	if err != nil {
		return err
	}
	conn.SetReadLimit(maxFrame)
	w := &worker{conn: conn, id: quote(workerID), started: time.Now()}

	register := fmt.Sprintf(`{"type":"WorkerRegister","registration":{"workerId":%s,`+
		`"supportedTasks":["noop","echo"],"maxConcurrency":%d,"language":"Go","tags":[]}}`,
		w.id, capacity)
	if err := w.write([]byte(register)); err != nil {
		return err
	}
	go w.heartbeats(time.Duration(heartbeatMs)*time.Millisecond, capacity)

	for {
		kind, frame, err := conn.Read(ctx)
		if err != nil {
			return fmt.Errorf("connection lost: %w", err)
		}
		if kind != websocket.MessageText {
			continue
		}
		var message struct {
			Type string `json:"type"`
			Task struct {
				ID      json.RawMessage `json:"id"`
				Payload json.RawMessage `json:"payload"`
			} `json:"task"`
		}
		if err := json.Unmarshal(frame, &message); err != nil {
			fmt.Fprintln(os.Stderr, "peer-worker: ignoring a malformed frame:", err)
			continue
		}
		switch message.Type {
		case "TaskDispatch":
			if err := w.write(w.completed(message.Task.ID, message.Task.Payload)); err != nil {
				return err
			}
		case "Shutdown":
			return conn.Close(websocket.StatusNormalClosure, "")
		}
	}
}

type worker struct {
	conn    *websocket.Conn
	id      []byte // the worker id, as a JSON string
	started time.Time
	mu      sync.Mutex // one writer at a time: the reader's results, the heartbeats
}

func (w *worker) write(frame []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.conn.Write(ctx, websocket.MessageText, frame)
}

// completed is the canonical TaskResult for a task that returned payload at once:
// the task id and the payload are copied as they came (JSON texts both).
func (w *worker) completed(taskID, payload json.RawMessage) []byte {
	if payload == nil {
		payload = json.RawMessage("null")
	}
	frame := make([]byte, 0, 128+len(payload))
	frame = append(frame, `{"type":"TaskResult","result":{"taskId":`...)
	frame = append(frame, taskID...)
	frame = append(frame, `,"status":"Completed","payload":`...)
	frame = append(frame, payload...)
	frame = append(frame, `,"error":null,"durationMs":0,"workerId":`...)
	frame = append(frame, w.id...)
	return append(frame, "}}"...)
}

func (w *worker) heartbeats(interval time.Duration, capacity int) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for range ticker.C {
		frame := fmt.Sprintf(`{"type":"Heartbeat","payload":{"workerId":%s,"activeTasks":0,`+
			`"capacity":%d,"uptimeSeconds":%d}}`, w.id, capacity, int(time.Since(w.started).Seconds()))
		if w.write([]byte(frame)) != nil {
			return // the reader sees the connection go too
		}
	}
}

func quote(s string) []byte {
	text, _ := json.Marshal(s) // a string always marshals
	return text
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
