package protocol

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
)

// Encode returns the canonical text of m: compact JSON, "type" first and then every
// field in the protocol's order (the optional extension fields, the metadata's
// idempotencyKey, attempt and epoch, TaskResult's progress and extendMs, the
// registration's maxConcurrencyByType and the signal's draining, only when they hold
// something), camelCase names, PascalCase enums, UTC timestamps, lowercase UUIDs;
// payloads as [Canonicalize] writes them. It fails only if a payload is not valid
// JSON, or CurrentLoad or a progress fraction is not finite.
func Encode(m Message) ([]byte, error) {
	e := encoder{buf: make([]byte, 0, 256)}
	e.buf = append(e.buf, `{"type":`...)
	e.buf = appendString(e.buf, m.Type())
	switch m := m.(type) {
	case TaskDispatch:
		e.field("task")
		e.task(m.Task)
	case Kill:
		e.field("taskId")
		e.uuid(m.TaskID)
		e.field("reason")
		e.buf = appendString(e.buf, m.Reason)
	case Shutdown:
		e.field("graceful")
		e.buf = strconv.AppendBool(e.buf, m.Graceful)
	case WorkerRegistered:
		e.field("workerId")
		e.buf = appendString(e.buf, m.WorkerID)
	case HeartbeatAck:
	case WorkerRegister:
		e.field("registration")
		e.registration(m.Registration)
	case Heartbeat:
		e.field("payload")
		e.heartbeat(m.Payload)
	case TaskResultMessage:
		e.field("result")
		e.result(m.Result)
	case Backpressure:
		e.field("signal")
		e.signal(m.Signal)
	}
	e.buf = append(e.buf, '}')
	if e.err != nil {
		return nil, fmt.Errorf("encoding %s: %w", m.Type(), e.err)
	}
	return e.buf, nil
}

type encoder struct {
	buf []byte
	err error // the first error
}

// field starts the member name: with a comma unless it is the first of its object.
func (e *encoder) field(name string) {
	if e.buf[len(e.buf)-1] != '{' {
		e.buf = append(e.buf, ',')
	}
	e.buf = append(e.buf, '"')
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, '"', ':')
}

func (e *encoder) open() { e.buf = append(e.buf, '{') }

func (e *encoder) close() { e.buf = append(e.buf, '}') }

func (e *encoder) uuid(u UUID) {
	e.buf = append(e.buf, '"')
	e.buf = append(e.buf, u.String()...)
	e.buf = append(e.buf, '"')
}

func (e *encoder) integer(name string, n int64) {
	e.field(name)
	e.buf = strconv.AppendInt(e.buf, n, 10)
}

func (e *encoder) strings(list []string) {
	e.buf = append(e.buf, '[')
	for i, s := range list {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, s)
	}
	e.buf = append(e.buf, ']')
}

func (e *encoder) payload(raw []byte) {
	if len(raw) == 0 {
		e.buf = append(e.buf, "null"...)
		return
	}
	var err error
	if e.buf, err = appendCanonical(e.buf, raw); err != nil && e.err == nil {
		e.err = fmt.Errorf("payload is not JSON: %w", err)
	}
}

func (e *encoder) task(t Task) {
	e.open()
	e.field("id")
	e.uuid(t.ID)
	e.field("taskType")
	e.buf = appendString(e.buf, t.TaskType)
	e.field("payload")
	e.payload(t.Payload)
	e.field("metadata")
	m := t.Metadata
	e.open()
	e.field("createdAt")
	e.buf = append(e.buf, '"')
	e.buf = appendTimestamp(e.buf, m.CreatedAt)
	e.buf = append(e.buf, '"')
	e.integer("timeoutMs", m.TimeoutMs)
	e.field("priority")
	e.buf = appendString(e.buf, m.Priority.String())
	e.integer("retryCount", m.RetryCount)
	e.integer("maxRetries", m.MaxRetries)
	e.field("traceId")
	if m.TraceID == nil {
		e.buf = append(e.buf, "null"...)
	} else {
		e.buf = appendString(e.buf, *m.TraceID)
	}
	if m.IdempotencyKey != nil {
		e.field("idempotencyKey")
		e.buf = appendString(e.buf, *m.IdempotencyKey)
	}
	if m.Attempt != nil {
		e.integer("attempt", *m.Attempt)
	}
	if m.Epoch != nil {
		e.integer("epoch", *m.Epoch)
	}
	e.close()
	e.close()
}

func (e *encoder) result(r TaskResult) {
	e.open()
	e.field("taskId")
	e.uuid(r.TaskID)
	e.field("status")
	e.buf = appendString(e.buf, string(r.Status))
	e.field("payload")
	e.payload(r.Payload)
	e.field("error")
	if r.Error == nil {
		e.buf = append(e.buf, "null"...)
	} else {
		e.open()
		e.field("code")
		e.buf = appendString(e.buf, r.Error.Code)
		e.field("message")
		e.buf = appendString(e.buf, r.Error.Message)
		e.field("retryable")
		e.buf = strconv.AppendBool(e.buf, r.Error.Retryable)
		e.close()
	}
	e.integer("durationMs", r.DurationMs)
	e.field("workerId")
	e.buf = appendString(e.buf, r.WorkerID)
	if p := r.Progress; p != nil {
		e.field("progress")
		e.open()
		e.field("fraction")
		if p.Fraction == nil {
			e.buf = append(e.buf, "null"...)
		} else {
			e.number(*p.Fraction, "progress fraction")
		}
		e.field("message")
		if p.Message == nil {
			e.buf = append(e.buf, "null"...)
		} else {
			e.buf = appendString(e.buf, *p.Message)
		}
		e.close()
	}
	if r.ExtendMs != 0 {
		e.integer("extendMs", r.ExtendMs)
	}
	e.close()
}

func (e *encoder) registration(r WorkerRegistration) {
	e.open()
	e.field("workerId")
	e.buf = appendString(e.buf, r.WorkerID)
	e.field("supportedTasks")
	e.strings(r.SupportedTasks)
	e.integer("maxConcurrency", r.MaxConcurrency)
	e.field("language")
	e.language(r.Language)
	e.field("tags")
	e.strings(r.Tags)
	if len(r.MaxConcurrencyByType) > 0 {
		e.field("maxConcurrencyByType")
		e.open()
		for i, taskType := range slices.Sorted(maps.Keys(r.MaxConcurrencyByType)) {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = append(appendString(e.buf, taskType), ':')
			e.buf = strconv.AppendInt(e.buf, r.MaxConcurrencyByType[taskType], 10)
		}
		e.close()
	}
	e.close()
}

// language writes a worker's language as rust-pipe 0.1 does, so that its dispatcher
// can read the registration: one of the names it knows as a string, any other as
// {"Other": name}.
func (e *encoder) language(name string) {
	if slices.Contains(rustPipeLanguages, name) {
		e.buf = appendString(e.buf, name)
		return
	}
	e.buf = append(e.buf, `{"Other":`...)
	e.buf = appendString(e.buf, name)
	e.buf = append(e.buf, '}')
}

func (e *encoder) heartbeat(p HeartbeatPayload) {
	e.open()
	e.field("workerId")
	e.buf = appendString(e.buf, p.WorkerID)
	e.integer("activeTasks", p.ActiveTasks)
	e.integer("capacity", p.Capacity)
	e.integer("uptimeSeconds", p.UptimeSeconds)
	e.close()
}

func (e *encoder) signal(s BackpressureSignal) {
	e.open()
	e.field("workerId")
	e.buf = appendString(e.buf, s.WorkerID)
	e.field("currentLoad")
	e.number(s.CurrentLoad, "currentLoad")
	e.field("shouldThrottle")
	e.buf = strconv.AppendBool(e.buf, s.ShouldThrottle)
	if s.Draining {
		e.field("draining")
		e.buf = append(e.buf, "true"...)
	}
	e.close()
}

// number appends a float as Python's repr writes it; what is not finite is an error.
func (e *encoder) number(f float64, what string) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		e.buf = append(e.buf, '0')
		if e.err == nil {
			e.err = errors.New(what + " is not a finite number")
		}
		return
	}
	e.buf = appendFloat(e.buf, f)
}
