// Package protocol is the trio_pipe wire protocol: its nine messages, the value
// types they carry, and a codec that is liberal on input and exact on output.
//
// [Decode] accepts what docs/protocol.md says a receiver accepts (enums in any ASCII
// case, and in snake_case when of several words; defaults for missing optional
// fields, the task_id and worker_id aliases, unknown members); [Encode] writes the
// canonical text: compact JSON, every field of rust-pipe v0.1 and the optional
// extension fields only when they hold something, camelCase names, PascalCase enums,
// in the order of the protocol's tables.
package protocol

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Protocol defaults and limits.
const (
	// DefaultTimeoutMs is a task's timeoutMs when its metadata leaves it out.
	DefaultTimeoutMs = 300_000
	// DefaultMaxRetries is a task's maxRetries when its metadata leaves it out.
	DefaultMaxRetries = 3
	// MaxFrameSize is the largest frame, in bytes, that the dispatcher accepts
	// (and that a worker should expect).
	MaxFrameSize = 16 << 20
)

// Error codes with a meaning fixed by the protocol (TaskError.Code is an open set).
const (
	CodeUnknownTaskType    = "UNKNOWN_TASK_TYPE"
	CodeHandlerError       = "HANDLER_ERROR"
	CodeParseError         = "PARSE_ERROR"
	CodeTimeout            = "TIMEOUT"
	CodeKilled             = "KILLED"
	CodeCancelled          = "CANCELLED"
	CodeWorkerSaturated    = "WORKER_SATURATED"
	CodeWorkerShuttingDown = "WORKER_SHUTTING_DOWN"
	CodeWorkerDisconnected = "WORKER_DISCONNECTED"
	CodeWorkerRemoved      = "WORKER_REMOVED"
	CodeDispatcherClosed   = "DISPATCHER_CLOSED"
	CodeInvalidPayload     = "INVALID_PAYLOAD"
)

// UUID is a task id. It is written in the lowercase hyphenated form.
type UUID [16]byte

// ParseUUID reads a UUID in any of the spellings the protocol accepts: hyphenated
// or 32 bare hex digits, any case, optionally in braces or after "urn:uuid:".
func ParseUUID(s string) (UUID, error) {
	digits := strings.NewReplacer("urn:", "", "uuid:", "").Replace(s)
	digits = strings.ReplaceAll(strings.Trim(digits, "{}"), "-", "")
	var u UUID
	if len(digits) != 2*len(u) {
		return u, fmt.Errorf("not a UUID: %s", quoteShort(s))
	}
	if _, err := hex.Decode(u[:], []byte(digits)); err != nil {
		return u, fmt.Errorf("not a UUID: %s", quoteShort(s))
	}
	return u, nil
}

// String returns the lowercase hyphenated form, "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f".
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	hex.Encode(b[9:13], u[4:6])
	hex.Encode(b[14:18], u[6:8])
	hex.Encode(b[19:23], u[8:10])
	hex.Encode(b[24:], u[10:])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return string(b[:])
}

// Priority orders queued tasks in the dispatcher; workers may ignore it.
type Priority int

// The priorities, lowest first.
const (
	PriorityLow Priority = iota
	PriorityNormal
	PriorityHigh
	PriorityCritical
)

var priorityNames = [...]string{"Low", "Normal", "High", "Critical"}

// String returns the wire name ("Low", "Normal", "High", "Critical").
func (p Priority) String() string {
	if p < PriorityLow || p > PriorityCritical {
		return fmt.Sprintf("Priority(%d)", int(p))
	}
	return priorityNames[p]
}

// TaskStatus is where a task is in its lifecycle; its value is the wire name.
type TaskStatus string

// The task statuses.
const (
	StatusPending    TaskStatus = "Pending"
	StatusDispatched TaskStatus = "Dispatched"
	StatusRunning    TaskStatus = "Running"
	StatusCompleted  TaskStatus = "Completed"
	StatusFailed     TaskStatus = "Failed"
	StatusTimedOut   TaskStatus = "TimedOut"
	StatusCancelled  TaskStatus = "Cancelled"
)

// IsTerminal reports whether a result with this status ends the task.
func (s TaskStatus) IsTerminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusTimedOut, StatusCancelled:
		return true
	}
	return false
}

// TaskMetadata is a task's scheduling information.
type TaskMetadata struct {
	CreatedAt  time.Time // UTC, microsecond precision
	TimeoutMs  int64     // the time the worker has for this try, from receipt
	Priority   Priority
	RetryCount int64   // earlier tries that failed and were retried
	MaxRetries int64   // how often a retryable failure may be retried
	TraceID    *string // nil when the task has none
	// IdempotencyKey, Attempt and Epoch are extensions (not in rust-pipe v0.1):
	// each is nil when the dispatcher did not send it, and written only when set.
	IdempotencyKey *string // the submitter's key for the task: one task per key
	// Attempt is which try of the task this dispatch is (>= 1), counted over the
	// task's whole life, across retries and dispatcher restarts.
	Attempt *int64
	// Epoch is the dispatcher's epoch (>= 0), which grows each time a dispatcher
	// opens its task store. With Attempt, the fencing token of this try.
	Epoch *int64
}

// DefaultMetadata is the metadata of a task that carries none: created now, every
// other field at its protocol default.
func DefaultMetadata() TaskMetadata {
	return TaskMetadata{
		CreatedAt:  time.Now().UTC().Truncate(time.Microsecond),
		TimeoutMs:  DefaultTimeoutMs,
		Priority:   PriorityNormal,
		MaxRetries: DefaultMaxRetries,
	}
}

// Timeout returns TimeoutMs as a duration, capped at the longest time.Duration.
func (m TaskMetadata) Timeout() time.Duration {
	if m.TimeoutMs > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(m.TimeoutMs) * time.Millisecond
}

// Task is one unit of work: TaskType selects the handler, Payload is its input.
type Task struct {
	ID       UUID
	TaskType string
	Payload  json.RawMessage // compact JSON; "null" when the task has none
	Metadata TaskMetadata
}

// TaskError says why a task did not complete.
type TaskError struct {
	Code      string
	Message   string
	Retryable bool
}

// TaskResult is the outcome of a task, or a progress report for it.
type TaskResult struct {
	TaskID     UUID
	Status     TaskStatus
	Payload    json.RawMessage // nil is written as null
	Error      *TaskError      // nil is written as null
	DurationMs int64
	WorkerID   string
	// Progress and ExtendMs belong to a Running report only; each is written only
	// when it holds something (nil, 0), so that a report without them, and every
	// terminal result, has rust-pipe v0.1's shape.
	Progress *Progress
	ExtendMs int64 // "let my deadline be now + ExtendMs" (>= 1); 0: no extension
}

// Progress is how far a running task has come.
type Progress struct {
	Fraction *float64 // in [0, 1]; nil (null) when not known
	Message  *string  // nil (null) when there is none
}

// rustPipeLanguages are the languages that rust-pipe 0.1's dispatcher knows by name.
// A registration writes its Language as one of these strings, or as
// {"Other": name} for any other language (rust-pipe refuses "Java", reads
// {"Other": "Java"}); a decoder reads both forms.
var rustPipeLanguages = []string{"TypeScript", "Python", "Go"}

// WorkerRegistration is who a worker is and what it runs.
type WorkerRegistration struct {
	WorkerID       string
	SupportedTasks []string
	MaxConcurrency int64
	Language       string   // "Go", "Python", "TypeScript" written as strings, any other as {"Other": name}
	Tags           []string // nil is written as []
	// MaxConcurrencyByType limits the tasks of some types (each 1 to
	// MaxConcurrency); written only when not empty.
	MaxConcurrencyByType map[string]int64
}

// HeartbeatPayload is a worker's current state.
type HeartbeatPayload struct {
	WorkerID      string
	ActiveTasks   int64
	Capacity      int64 // the worker's maximum concurrency
	UptimeSeconds int64
}

// BackpressureSignal is a worker's load and whether it wants new tasks.
type BackpressureSignal struct {
	WorkerID       string
	CurrentLoad    float64
	ShouldThrottle bool
	// Draining says the worker is stopping: no new task for the rest of the
	// connection, whatever it sends later. Written only when true.
	Draining bool
}

// ValidateWorkerID returns an error unless id is 1 to 128 characters of
// A-Z a-z 0-9 . _ - starting with a letter or a digit.
func ValidateWorkerID(id string) error {
	valid := len(id) >= 1 && len(id) <= 128 && isAlphanumeric(id[0])
	for i := 1; valid && i < len(id); i++ {
		valid = isAlphanumeric(id[i]) || id[i] == '.' || id[i] == '_' || id[i] == '-'
	}
	if !valid {
		return errors.New("invalid worker id " + quoteShort(id) +
			": expected 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit")
	}
	return nil
}

func isAlphanumeric(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// quoteShort quotes s for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}
